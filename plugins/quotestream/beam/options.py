"""The pipelines' own options, one class per pipeline plus the settings both read.

A pipeline reads its options through its own class's view, and Beam's views refuse any option
their class does not declare: so these classes are exactly what each flex template's metadata
must declare (tests/beam/test_dataflow_translation.py compares them).
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class QuotestreamOptions(PipelineOptions):
    """Where data lives (project, topics, dataset, API URL) comes from quotestream's settings,
    read by the launcher, so a job and its DAG agree."""

    @classmethod
    def _add_argparse_args(cls, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--settings",
            default="{}",
            help="JSON object of quotestream settings over the environment's, e.g. "
            '{"project": "my-project", "target": "gcp"} (flex templates have no environment)',
        )


class LoadOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--subscription", help="Pub/Sub subscription to load (default: the settings')"
        )
        parser.add_argument(
            "--allowed_lateness_s",
            type=int,
            default=300,
            help="how late a quote may arrive and still update its 1-minute bar",
        )
        parser.add_argument(
            "--backfill_start",
            help="RFC 3339; with --backfill_end, load the API's history in batch instead",
        )
        parser.add_argument("--backfill_end", help="RFC 3339, exclusive")


class ExtractOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--poll_interval_s", type=float, default=1.0, help="seconds between polls"
        )
        parser.add_argument(
            "--poll_lag_s",
            type=float,
            default=1.0,
            help="stay this far behind now, so clock skew cannot skip a tick",
        )


# What each pipeline accepts beyond Beam's own options.
PIPELINE_OPTIONS: dict[str, tuple[type[PipelineOptions], ...]] = {
    "load": (QuotestreamOptions, LoadOptions),
    "extract": (QuotestreamOptions, ExtractOptions),
}
