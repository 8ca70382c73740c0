from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline


def direct_pipeline(*, streaming: bool = False) -> test_pipeline.TestPipeline:
    """A TestPipeline on the DirectRunner, always named explicitly (the default runner
    would try to download Prism)."""
    args = ["--runner=DirectRunner", *(["--streaming"] if streaming else [])]
    return test_pipeline.TestPipeline(options=PipelineOptions(args))
