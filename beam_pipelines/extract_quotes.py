"""Entry point of the extract pipeline (flex template and local runs).

python beam_pipelines/extract_quotes.py --runner=DirectRunner [beam and quotestream options]
"""

import sys

from quotestream.beam.run import main

if __name__ == "__main__":
    main("extract", sys.argv[1:])
