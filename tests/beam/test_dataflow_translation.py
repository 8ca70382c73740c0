"""Both pipelines as a flex-template launch builds them, translated for Dataflow by the
DataflowRunner's dry run: Beam 2.77 builds the job (`result.job`) and returns before it would
ask Google for anything (apache_beam/runners/dataflow/dataflow_runner.py, `if
test_options.dry_run`). Checked: streaming or batch, Dataflow's own Pub/Sub source with the
publisher's attributes, and the step names an in-place update of a running job matches on."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.utils.timestamp import Timestamp
from google.cloud.dataflow import JobType

import quotestream.beam.options
from quotestream.beam import edges, run
from quotestream.beam.options import PIPELINE_OPTIONS
from quotestream.domain.quote import Quote, format_ts
from tests.conftest import REPO
from tests.support.local_runs import stay_on_loopback

pytestmark = pytest.mark.unit


PROJECT = "quotestream-test"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/quotes-load-replay"

# What the flex-template launch adds to the template's parameters: the runner (the entry point
# requires it), where the job runs, and the launch environment the Dataflow JobRunner sets
# (temp location, worker image, service account, Streaming Engine). No --streaming: the
# pipeline kind decides.
LAUNCHER_ARGS = [
    "--runner=DataflowRunner",
    f"--project={PROJECT}",
    "--region=us-central1",
    "--temp_location=gs://quotestream-test-dataflow/tmp",
    "--sdk_container_image=us-central1-docker.pkg.dev/quotestream-test/quotestream/load:1",
    f"--service_account_email=dataflow@{PROJECT}.iam.gserviceaccount.com",
    "--experiments=enable_streaming_engine",
    "--dry_run=True",
]

# A valid value for every parameter a metadata file declares (checked against its regexes).
PARAMETER_VALUES = {
    "settings": json.dumps({"target": "gcp", "project": PROJECT, "api_url": "https://api.example"}),
    "subscription": SUBSCRIPTION,
    "allowed_lateness_s": "120",
    "backfill_start": "2026-11-24T10:00:00Z",
    "backfill_end": "2026-11-24T11:00:00Z",
    "poll_interval_s": "0.5",
    "poll_lag_s": "2",
}
BACKFILL = ("backfill_start", "backfill_end")

# Step names down to the second level. A streaming job is updated in place by name: renaming a
# step (ours, or one Beam's composites name) makes Dataflow refuse the update, or needs a
# --transform_name_mapping. Change these only together with that mapping.
LOAD_STEPS = {
    "ReadPubSub",
    "ReadPubSub/Read",
    "ReadPubSub/ParDo(_AddMetricsPassThrough)",
    "ReadPubSub/Map(_from_proto_str)",
    "ToRawMessage",
    "LoadQuotes",
    "LoadQuotes/ParseQuotes",
    "LoadQuotes/QuoteRows",
    "LoadQuotes/WriteQuotes",
    "LoadQuotes/OneMinuteBars",
    "LoadQuotes/WriteBars",
    "LoadQuotes/DeadLetterRejectedBars",
    "LoadQuotes/DeadLetter",
    "LoadQuotes/DeadLetterRejectedQuotes",
}
EXTRACT_STEPS = {
    "Poll",
    "Poll/Impulse",
    "ExtractQuotes",
    "ExtractQuotes/EachPair",
    "ExtractQuotes/FetchNew",
    "ExtractQuotes/Publish",
}


def metadata(kind: str) -> dict[str, Any]:
    path = REPO / "beam_pipelines" / f"{kind}_quotes.metadata.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def parameter_names(kind: str) -> set[str]:
    return {parameter["name"] for parameter in metadata(kind)["parameters"]}


def template_args(kind: str, *, leave_out: tuple[str, ...] = ()) -> list[str]:
    """Every parameter the template declares, as the launcher hands them to the entry point."""
    return [
        f"--{name}={PARAMETER_VALUES[name]}"
        for name in sorted(parameter_names(kind))
        if name not in leave_out
    ]


def option_names(*classes: type[PipelineOptions]) -> set[str]:
    parser = argparse.ArgumentParser()
    for cls in classes:
        cls._add_argparse_args(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Any connection or name lookup beyond loopback fails at once and is recorded: a dry run
    that reached for Google (credentials, the metadata server, GCS) fails here instead of
    hanging on retries."""
    attempts: list[object] = []
    undo = stay_on_loopback(attempts.append)
    # The job must be built from the parameters alone, as on the launcher VM.
    for variable in list(os.environ):
        if variable.startswith("QUOTESTREAM_") or variable.endswith("_EMULATOR_HOST"):
            monkeypatch.delenv(variable)
    try:
        yield attempts
    finally:
        undo()
    assert attempts == [], f"the dry run reached beyond this machine: {attempts}"


def translate(kind: str, args: list[str]) -> Any:
    result = run.launch(kind, [*LAUNCHER_ARGS, f"--job_name=quotestream-{kind}", *args])
    return result.job


def step_names(pipeline: beam_runner_api_pb2.Pipeline, depth: int = 2) -> set[str]:
    transforms = pipeline.components.transforms
    names: set[str] = set()
    level = [
        child for root in pipeline.root_transform_ids for child in transforms[root].subtransforms
    ]
    for _ in range(depth):
        names |= {transforms[t].unique_name for t in level}
        level = [child for t in level for child in transforms[t].subtransforms]
    return names


def pubsub_reads(pipeline: beam_runner_api_pb2.Pipeline) -> list[Any]:
    return [
        (transform, beam_runner_api_pb2.PubSubReadPayload.FromString(transform.spec.payload))
        for transform in pipeline.components.transforms.values()
        if transform.spec.urn == common_urns.composites.PUBSUB_READ.urn
    ]


def test_the_load_translates_to_a_streaming_job_reading_pubsub_natively() -> None:
    job = translate("load", template_args("load", leave_out=BACKFILL))

    assert job.proto.type_ == JobType.JOB_TYPE_STREAMING
    assert job.proto.name == "quotestream-load"
    assert "enable_streaming_engine" in job.options.view_as(DebugOptions).experiments
    # Runner v2 sends the portable pipeline; the v1b3 steps stay empty and Dataflow swaps
    # its own source in for the Pub/Sub read urn (which must stay a leaf for that).
    assert list(job.proto.steps) == []
    [(read, payload)] = pubsub_reads(job.proto_pipeline)
    assert read.unique_name == "ReadPubSub/Read"
    assert list(read.subtransforms) == []
    assert payload.subscription == SUBSCRIPTION
    assert payload.topic == ""
    assert payload.with_attributes
    assert payload.timestamp_attribute == "event_ts"
    assert payload.id_attribute == "event_id"
    assert step_names(job.proto_pipeline) == LOAD_STEPS
    [environment] = job.proto_pipeline.components.environments.values()
    assert environment.urn == common_urns.environments.DOCKER.urn
    image = beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image
    assert f"--sdk_container_image={image}" in LAUNCHER_ARGS


def test_the_extract_translates_to_a_streaming_job() -> None:
    job = translate("extract", template_args("extract"))

    assert job.proto.type_ == JobType.JOB_TYPE_STREAMING
    assert pubsub_reads(job.proto_pipeline) == []
    assert step_names(job.proto_pipeline) == EXTRACT_STEPS


def test_a_backfill_translates_to_a_batch_job_without_pubsub() -> None:
    job = translate("load", template_args("load"))

    assert job.proto.type_ == JobType.JOB_TYPE_BATCH
    assert pubsub_reads(job.proto_pipeline) == []
    names = step_names(job.proto_pipeline, depth=1)
    assert {"ReadHistory", "LoadQuotes"} <= names
    assert "ReadPubSub" not in names


@pytest.mark.parametrize("event_ts_ms", [1_795_000_000_123, 1_795_000_000_000, 86_400_007])
def test_the_publisher_sets_the_attributes_the_read_takes_in_a_form_beam_parses(
    event_ts_ms: int,
) -> None:
    quote = Quote(
        event_id="0123abcd",
        pair="USD-BRL",
        base="USD",
        quote_currency="BRL",
        bid=Decimal("5.3500"),
        ask=Decimal("5.3510"),
        mid=Decimal("5.3505"),
        spread=Decimal("0.0010"),
        event_ts_ms=event_ts_ms,
        source="sim",
    )
    attributes = quote.pubsub_attributes()

    assert attributes[edges.EVENT_ID_ATTRIBUTE] == quote.event_id
    stamp = attributes[edges.EVENT_TIME_ATTRIBUTE]
    # The form ReadFromPubSub's docstring gives (as does PubsubIO.Read.withTimestampAttribute
    # in Java): RFC 3339, UTC, e.g. 2015-10-29T23:41:41.123Z.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert stamp == format_ts(event_ts_ms)
    # What the DirectRunner's read does with it (transform_evaluator._PubSubReadEvaluator).
    assert Timestamp.from_rfc3339(stamp) == Timestamp(micros=event_ts_ms * 1000)


@pytest.mark.parametrize("kind", sorted(PIPELINE_OPTIONS))
def test_each_metadata_file_declares_exactly_the_options_its_pipeline_reads(kind: str) -> None:
    assert parameter_names(kind) == option_names(*PIPELINE_OPTIONS[kind])


def test_every_option_class_belongs_to_a_pipeline() -> None:
    declared = {
        cls
        for _, cls in inspect.getmembers(quotestream.beam.options, inspect.isclass)
        if issubclass(cls, PipelineOptions) and cls.__module__ == quotestream.beam.options.__name__
    }
    assert declared == {cls for classes in PIPELINE_OPTIONS.values() for cls in classes}


@pytest.mark.parametrize("kind", sorted(PIPELINE_OPTIONS))
def test_the_test_values_satisfy_the_metadata(kind: str) -> None:
    for parameter in metadata(kind)["parameters"]:
        for pattern in parameter.get("regexes", []):
            assert re.fullmatch(pattern, PARAMETER_VALUES[parameter["name"]]), parameter


# The writers' own steps, whichever writer the settings choose: the shard state (each shard's
# stream and offset) travels with an in-place update only if these names stay.
WRITE_STEPS = {
    f"LoadQuotes/{writer}/{step}"
    for writer in (
        "WriteQuotes",
        "WriteBars",
        "DeadLetter/Write",
        "DeadLetterRejectedQuotes/Write",
        "DeadLetterRejectedBars/Write",
    )
    for step in ("Batch", "Shard", "Write")
}


def test_the_load_writes_each_table_through_named_sharded_stateful_steps() -> None:
    job = translate("load", template_args("load", leave_out=BACKFILL))

    assert step_names(job.proto_pipeline, depth=4) >= WRITE_STEPS
    transforms = job.proto_pipeline.components.transforms.values()
    stateful = {
        transform.unique_name.rsplit("/", 2)[0]: set(
            beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).state_specs
        )
        for transform in transforms
        if transform.unique_name.endswith("/Write/ParDo(WriteShardFn)")
    }
    assert stateful == {
        name.removesuffix("/Write"): {"shard"} for name in WRITE_STEPS if name.endswith("/Write")
    }
