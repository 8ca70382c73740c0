"""Entry point of the load pipeline (flex template and local runs).

python beam_pipelines/load_quotes.py --runner=DirectRunner [beam and quotestream options]
"""

import sys

from quotestream.beam.run import main

if __name__ == "__main__":
    main("load", sys.argv[1:])
