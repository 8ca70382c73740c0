"""Building and launching the two pipelines from settings and command-line options.

Launching returns the job's PipelineResult at once: a streaming job runs until cancelled, so
the launcher (CLI, DAG task, flex template) decides whether to wait.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import partial

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from quotestream import bootstrap
from quotestream.beam.edges import DataflowPubSubEdge, LoadEdge
from quotestream.beam.extract import ExtractQuotes, Fallback
from quotestream.beam.load import STORED, LoadQuotes, ReadHistory
from quotestream.beam.options import ExtractOptions, LoadOptions, QuotestreamOptions
from quotestream.beam.pull import LocalPubSubEdge
from quotestream.beam.ticks import Ticks, bound_local_runner_metrics
from quotestream.domain.quote import to_ms
from quotestream.settings import Settings

# Beam 2.77's DirectRunner first tries the Prism runner, whose binary it downloads at run
# time (failing offline, after a network attempt). It skips Prism for pipelines that allow
# unsafe triggers; ours use only safe ones, so for them the flag changes nothing else.
SKIP_PRISM = "--allow_unsafe_triggers"


class LaunchError(ValueError):
    pass


def _runner(argv: Sequence[str]) -> str:
    runner = next(
        (arg.split("=", 1)[1] for arg in _joined(argv) if arg.startswith("--runner=")), None
    )
    if runner is None:
        raise LaunchError(
            "pass --runner=... explicitly: DirectRunner locally, DataflowRunner on Google Cloud"
        )
    return runner


def _is_local(runner: str) -> bool:
    """Beam's names for its local runner, as `--runner` accepts them."""
    return runner.lower().removesuffix("runner") in {"direct", "switchingdirect"}


def _options(argv: Sequence[str], *, streaming: bool) -> PipelineOptions:
    runner = _runner(argv)
    args = _joined(argv)
    if _is_local(runner) and SKIP_PRISM not in args:
        args.append(SKIP_PRISM)
    options = PipelineOptions(args, save_main_session=False)
    options.view_as(StandardOptions).streaming = streaming
    return options


def _joined(argv: Sequence[str]) -> list[str]:
    """`--runner X` as `--runner=X`, so the runner is found however it was written."""
    joined: list[str] = []
    args = iter(argv)
    for arg in args:
        joined.append(f"--runner={next(args, '')}" if arg == "--runner" else arg)
    return joined


def _moment(text: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LaunchError(f"--{name} must be RFC 3339, e.g. 2026-11-24T10:00:00Z") from None
    if moment.tzinfo is None:
        raise LaunchError(f"--{name} needs a UTC offset, e.g. 2026-11-24T10:00:00Z")
    return to_ms(moment)


def load_pipeline(argv: Sequence[str], settings: Settings) -> beam.Pipeline:
    custom = PipelineOptions(list(argv)).view_as(LoadOptions)
    backfill = bool(custom.backfill_start or custom.backfill_end)
    options = _options(argv, streaming=not backfill)
    pipeline = beam.Pipeline(options=options)
    if backfill:
        if not (custom.backfill_start and custom.backfill_end):
            raise LaunchError("--backfill_start and --backfill_end go together")
        start_ms = _moment(custom.backfill_start, "backfill_start")
        end_ms = _moment(custom.backfill_end, "backfill_end")
        if end_ms <= start_ms:
            raise LaunchError("--backfill_end must be after --backfill_start")
        messages = pipeline | "ReadHistory" >> ReadHistory(
            settings.pairs, partial(bootstrap.build_quote_source, settings), start_ms, end_ms
        )
    else:
        subscription = custom.subscription or (
            f"projects/{settings.project}/subscriptions/{settings.load_subscription}"
        )
        edge = load_edge(settings, subscription)
        messages = edge.read(pipeline)
    loaded = messages | "LoadQuotes" >> LoadQuotes(
        partial(bootstrap.build_table_writer, settings),
        partial(bootstrap.build_stored_row_lookups, settings),
        custom.allowed_lateness_s,
        settings.pairs,
        # History has no freshness horizon: the backfill exists to load it.
        max_quote_age_ms=None if backfill else settings.max_quote_age_s * 1000,
        shards=settings.write_shards(),
    )
    if not backfill:
        edge.settle(loaded[STORED])
    return pipeline


def load_edge(settings: Settings, subscription: str) -> LoadEdge:
    """Dataflow's Pub/Sub source on Google Cloud; locally, a source that leaves each message
    unacknowledged until what it became is stored. Chosen here, in the pipelines' own
    composition: the core's bootstrap knows nothing of Beam."""
    if settings.target == "gcp":
        return DataflowPubSubEdge(subscription)
    return LocalPubSubEdge(
        subscription,
        partial(bootstrap.build_subscriber, settings),
        partial(bootstrap.build_stored_row_lookups, settings),
        settings.pairs,
        settings.ack_deadline_s,
    )


def extract_pipeline(argv: Sequence[str], settings: Settings) -> beam.Pipeline:
    options = _options(argv, streaming=True)
    custom = options.view_as(ExtractOptions)
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | "Poll" >> Ticks(custom.poll_interval_s, paced=_is_local(_runner(argv)))
        | "ExtractQuotes"
        >> ExtractQuotes(
            settings.pairs,
            partial(bootstrap.build_quote_source, settings, live=True),
            partial(bootstrap.build_publisher, settings, ordered=settings.message_ordering),
            settings.quotes_topic,
            lag_ms=int(custom.poll_lag_s * 1000),
            # Each pair's quotes in order on an ordered subscription.
            ordered=settings.message_ordering,
            # Each pair resumes at what `quotes` holds: a relaunch loses nothing.
            resume_points=bootstrap.resume_points_factory(settings),
            # Of the quotes it fetches itself: the API's carry the simulator's source.
            resume_source=settings.stored_source(settings.extract_source),
            max_lookback_ms=settings.extract_max_lookback_s * 1000,
            resume_overlap_ms=settings.extract_resume_overlap_s * 1000,
            fallback=_fallback(settings),
        )
    )
    return pipeline


def _fallback(settings: Settings) -> Fallback | None:
    kind = settings.extract_fallback_source
    if kind is None:
        return None
    return Fallback(
        partial(bootstrap.build_quote_source, settings, kind=kind),
        name=settings.stored_source(kind),
        primary_name=settings.stored_source(settings.extract_source),
        after_ms=int(settings.extract_failover_after_s * 1000),
        probe_every_ms=int(settings.extract_failback_probe_s * 1000),
    )


def settings_from(argv: Sequence[str]) -> Settings:
    """The environment's settings, overridden by the --settings JSON option."""
    raw = PipelineOptions(list(argv)).view_as(QuotestreamOptions).settings
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LaunchError(f"--settings is not JSON: {error}") from None
    if not isinstance(overrides, dict):
        raise LaunchError("--settings must be a JSON object")
    return Settings(**overrides)


def for_pipeline(kind: str, settings: Settings) -> Settings:
    """The settings a pipeline's DoFns carry (pickled into the job's graph): without any
    secret but the one it uses, OANDA's token for an extract reading OANDA (which runs on the
    local target only: the settings refuse it on gcp)."""
    needed = {"oanda_token"} if kind == "extract" and settings.extract_reads_oanda else set()
    return settings.model_copy(update=dict.fromkeys(Settings.secret_fields() - needed))


def launch(kind: str, argv: Sequence[str], settings: Settings | None = None) -> PipelineResult:
    """Build and start a pipeline; returns as soon as it runs (streaming jobs run on)."""
    build = {"load": load_pipeline, "extract": extract_pipeline}[kind]
    if _is_local(_runner(argv)):
        bound_local_runner_metrics()
    resolved = settings or settings_from(argv)
    return build(argv, for_pipeline(kind, resolved)).run()


def quiet_beam_logging() -> None:
    """Per-batch statistics of BatchElements (thousands a minute) and every string annotation
    Beam cannot evaluate (our `annotations` import) would bury what a job has to say."""
    import logging

    for noisy in ("apache_beam.transforms.util", "apache_beam.typehints.native_type_compatibility"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(kind: str, argv: Sequence[str]) -> None:
    """What a flex template or a local `python beam_pipelines/..._quotes.py` runs."""
    import logging

    logging.basicConfig(level=logging.INFO)
    quiet_beam_logging()
    result = launch(kind, argv)
    # On Dataflow the launcher returns once the job is submitted; a local run is the job.
    if not any(arg.startswith("--runner=Dataflow") for arg in _joined(argv)):
        result.wait_until_finish()
