from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline

from quotestream.beam.run import LOCAL_RUNNER


def direct_pipeline(*, streaming: bool = False) -> test_pipeline.TestPipeline:
    """A TestPipeline on the DirectRunner's bundle-based engine, named explicitly: Beam's
    default runner, and since 2.6x `DirectRunner` too, first try to download Prism."""
    args = [f"--runner={LOCAL_RUNNER}", *(["--streaming"] if streaming else [])]
    return test_pipeline.TestPipeline(options=PipelineOptions(args))
