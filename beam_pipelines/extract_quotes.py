"""Entry point of the extract pipeline (flex template and local runs).

python beam_pipelines/extract_quotes.py --runner=DirectRunner [beam and quotestream options]
"""

from __future__ import annotations

import logging
import sys

from quotestream.beam.run import launch

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch("extract", sys.argv[1:]).wait_until_finish()
