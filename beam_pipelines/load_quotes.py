"""Entry point of the load pipeline (flex template and local runs).

python beam_pipelines/load_quotes.py --runner=DirectRunner [beam and quotestream options]
"""

from __future__ import annotations

import logging
import sys

from quotestream.beam.run import launch

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    result = launch("load", sys.argv[1:])
    # On Dataflow the launcher returns once the job is submitted; a local run is the job.
    if not any(arg.startswith("--runner=Dataflow") for arg in sys.argv):
        result.wait_until_finish()
