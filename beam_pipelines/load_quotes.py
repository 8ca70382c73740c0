"""Entry point of the load pipeline (flex template and local runs).

python beam_pipelines/load_quotes.py --runner=DirectRunner [beam and quotestream options]
"""

from __future__ import annotations

import logging
import sys

from quotestream.beam.run import launch

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch("load", sys.argv[1:]).wait_until_finish()
