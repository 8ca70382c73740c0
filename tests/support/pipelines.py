from __future__ import annotations

import itertools
import threading

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline

from quotestream.beam.run import SKIP_PRISM


def direct_pipeline(*, streaming: bool = False) -> test_pipeline.TestPipeline:
    """A TestPipeline on the DirectRunner, named explicitly and kept off Prism (which it
    would otherwise try to download)."""
    args = ["--runner=DirectRunner", SKIP_PRISM, *(["--streaming"] if streaming else [])]
    return test_pipeline.TestPipeline(options=PipelineOptions(args))


_CLOCKS: dict[str, itertools.count[int]] = {}
_CLOCKS_LOCK = threading.Lock()


class StepClock:
    """Each reading one second after the last, from `start_ms`, shared by every copy Beam
    makes of it (by `name`)."""

    def __init__(self, name: str, start_ms: int) -> None:
        self.name = name
        self.start_ms = start_ms

    def __call__(self) -> int:
        with _CLOCKS_LOCK:
            return self.start_ms + 1000 * next(_CLOCKS.setdefault(self.name, itertools.count()))
