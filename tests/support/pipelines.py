from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline

from quotestream.beam.run import SKIP_PRISM


def direct_pipeline(*, streaming: bool = False) -> test_pipeline.TestPipeline:
    """A TestPipeline on the DirectRunner, named explicitly and kept off Prism (which it
    would otherwise try to download)."""
    args = ["--runner=DirectRunner", SKIP_PRISM, *(["--streaming"] if streaming else [])]
    return test_pipeline.TestPipeline(options=PipelineOptions(args))
