"""The load's Dataflow read (Beam's ReadFromPubSub with the event-time and event-id attributes)
run on the DirectRunner against the Pub/Sub emulator, with messages that lack those attributes
or carry a garbled event time: where every message that went in ends up.

The DirectRunner swaps in its own Pub/Sub read (runners/direct/transform_evaluator.py,
_PubSubReadEvaluator), which is not Dataflow's; what these tests show is Beam's local
behaviour. Each pipeline runs in a process of its own, stopped by its pid, for a bounded time.

Also the entry point of that process: python -m tests.beam.test_pubsub_attributes MODE
SUBSCRIPTION PROJECT TIMESTAMPS_FILE
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import ReadFromPubSub
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess, start_service
from quotestream.beam import edges, run
from quotestream.beam.load import LoadQuotes
from quotestream.beam.messages import from_pubsub
from quotestream.domain.quote import Quote, now_ms
from quotestream.settings import Settings
from tests.conftest import REPO
from tests.support.local_runs import (
    provisioned_project,
    recent_quotes,
    stay_on_loopback,
    wait_until,
)

pytestmark = pytest.mark.integration

# The read exactly as the load builds it for Dataflow (edges.read_pubsub).
AS_ON_DATAFLOW = "as-on-dataflow"
# The same read without id_label, the one argument the DirectRunner refuses.
EVENT_TIME_ONLY = "event-time-only"
OFFLINE_MARKER = "REACHED BEYOND LOOPBACK"


class RecordTimestampFn(beam.DoFn):
    """Appends each message's id and element timestamp (what the read made of its event
    time) to a file the test reads."""

    def __init__(self, path: str) -> None:
        self._path = path

    def process(self, message: Any, timestamp: Any = beam.DoFn.TimestampParam) -> None:
        with open(self._path, "a") as out:
            out.write(json.dumps([message.message_id, timestamp.micros // 1000]) + "\n")


def _main(mode: str, subscription: str, project: str, timestamps_path: str) -> None:
    stay_on_loopback(lambda where: print(OFFLINE_MARKER, where, flush=True))
    settings = Settings(project=project, target="local", message_ordering=False)
    read = (
        edges.read_pubsub(subscription)
        if mode == AS_ON_DATAFLOW
        else ReadFromPubSub(
            subscription=subscription,
            with_attributes=True,
            timestamp_attribute=edges.EVENT_TIME_ATTRIBUTE,
        )
    )
    options = PipelineOptions(["--runner=DirectRunner", run.SKIP_PRISM, "--streaming"])
    pipeline = beam.Pipeline(options=options)
    messages = pipeline | "ReadPubSub" >> read | "ToRawMessage" >> beam.Map(from_pubsub)
    _ = messages | "RecordTimestamps" >> beam.ParDo(RecordTimestampFn(timestamps_path))
    _ = messages | "LoadQuotes" >> LoadQuotes(
        partial(bootstrap.build_table_writer, settings),
        partial(bootstrap.build_stored_row_lookups, settings),
        pairs=settings.pairs,
    )
    pipeline.run().wait_until_finish()


@pytest.fixture
def project(pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess) -> Settings:
    # A short ack deadline: what the read left unacknowledged is pulled again within the test.
    settings = provisioned_project("attrs", ack_deadline_s=10)
    return settings


@pytest.fixture
def start_read(project: Settings, logs_dir: Path) -> Iterator[Any]:
    started: list[ServiceProcess] = []

    def start(mode: str) -> tuple[ServiceProcess, Path]:
        name = f"read-{project.project}-{len(started)}"
        timestamps = logs_dir / f"{name}.timestamps"
        argv = [
            sys.executable,
            "-m",
            "tests.beam.test_pubsub_attributes",
            mode,
            subscription_path(project),
            project.project,
            str(timestamps),
        ]
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        process = start_service(
            name,
            argv,
            host="127.0.0.1",
            port=0,
            log_path=logs_dir / f"{name}.log",
            ready=lambda: True,
            env={"PYTHONPATH": path},
        )
        started.append(process)
        return process, timestamps

    yield start
    for process in started:
        process.stop()


def subscription_path(settings: Settings) -> str:
    return f"projects/{settings.project}/subscriptions/{settings.load_subscription}"


def publish(settings: Settings, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]:
    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    futures = [publisher.publish(topic, data, **attributes) for data, attributes in messages]
    return [future.result(timeout=30) for future in futures]


def pull_all(settings: Settings) -> list[Any]:
    """Whatever the subscription still holds (acknowledged here, so it is counted once)."""
    subscriber = SubscriberClient()
    received: list[Any] = []
    try:
        while True:
            response = subscriber.pull(
                request={
                    "subscription": subscription_path(settings),
                    "max_messages": 100,
                    "return_immediately": True,
                },
                timeout=10,
            )
            if not response.received_messages:
                return received
            received += [item.message for item in response.received_messages]
            subscriber.acknowledge(
                request={
                    "subscription": subscription_path(settings),
                    "ack_ids": [item.ack_id for item in response.received_messages],
                }
            )
    finally:
        subscriber.close()


def stored(settings: Settings) -> tuple[Counter[str], Counter[str]]:
    """event_id of every quote row, message_id of every dead-letter row."""
    warehouse = bootstrap.build_warehouse(settings)
    quotes = warehouse.query("SELECT event_id FROM {dataset}.quotes")
    dead = warehouse.query("SELECT message_id FROM {dataset}.quotes_dead_letter")
    return Counter(r["event_id"] for r in quotes), Counter(r["message_id"] for r in dead)


def without(attributes: dict[str, str], *names: str) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if key not in names}


def quotes(settings: Settings, count: int) -> list[Quote]:
    return [q for q in recent_quotes(11, "attrs", 10 * count) if q.pair in settings.pairs][:count]


def test_the_dataflow_read_does_not_run_on_the_direct_runner_and_takes_no_message(
    project: Settings, start_read: Any
) -> None:
    sent = quotes(project, 3)
    ids = publish(project, [(q.to_json(), q.pubsub_attributes()) for q in sent])

    process, _ = start_read(AS_ON_DATAFLOW)
    assert process.wait(timeout=60) != 0
    log = process.log_path.read_text()
    assert "DirectRunner: id_label is not supported for PubSub reads" in log
    assert OFFLINE_MARKER not in log

    assert sorted(m.message_id for m in pull_all(project)) == sorted(ids)
    assert stored(project) == (Counter(), Counter())


def test_messages_without_the_attributes_are_loaded_at_their_publish_time(
    project: Settings, start_read: Any
) -> None:
    good = quotes(project, 16)
    old_ts = good[0].pubsub_attributes()["event_ts"]
    # (data, attributes, the element timestamp expected: event time, or None for publish time)
    cases: list[tuple[bytes, dict[str, str], int | None]] = [
        *[(q.to_json(), q.pubsub_attributes(), q.event_ts_ms) for q in good[:4]],
        *[(q.to_json(), without(q.pubsub_attributes(), "event_ts"), None) for q in good[4:8]],
        *[
            (q.to_json(), without(q.pubsub_attributes(), "event_id"), q.event_ts_ms)
            for q in good[8:12]
        ],
        *[(q.to_json(), {}, None) for q in good[12:]],
        # Payloads the gate refuses, with and without the attributes.
        (b"{not json", {}, None),
        (b"[1,2,3]", {"event_id": "x", "event_ts": old_ts}, good[0].event_ts_ms),
    ]
    published_from = now_ms()
    ids = publish(project, [(data, attributes) for data, attributes, _ in cases])
    published_to = now_ms()

    started = time.monotonic()
    process, timestamps = start_read(EVENT_TIME_ONLY)
    wait_until(
        lambda: sum(found.total() for found in stored(project)) >= len(cases),
        timeout=120,
        what="a row for every message",
        poll_s=1.0,
    )
    seconds = time.monotonic() - started
    time.sleep(3)  # anything extra (a duplicate) would show up now
    process.stop()

    quote_ids, dead_ids = stored(project)
    assert quote_ids == Counter(q.event_id for q in good)
    assert dead_ids == Counter(ids[-2:])
    assert OFFLINE_MARKER not in process.log_path.read_text()
    stamps = dict(json.loads(line) for line in timestamps.read_text().splitlines())
    assert set(stamps) == set(ids)
    for message_id, (_, _, event_ts_ms) in zip(ids, cases, strict=True):
        if event_ts_ms is None:
            # The quotes were made 30 s or more before they were published.
            assert published_from - 1000 <= stamps[message_id] <= published_to + 1000
        else:
            assert stamps[message_id] == event_ts_ms
    print(f"{len(cases)} messages, every one stored once, in {seconds:.1f} s", file=sys.stderr)


def test_a_garbled_event_time_fails_the_read_and_its_pull_stays_in_pubsub(
    project: Settings, start_read: Any
) -> None:
    good = quotes(project, 4)
    garbled = {**good[0].pubsub_attributes(), "event_ts": "yesterday"}
    messages = [(good[0].to_json(), garbled)]
    messages += [(q.to_json(), q.pubsub_attributes()) for q in good[1:]]
    ids = publish(project, messages)

    process, _ = start_read(EVENT_TIME_ONLY)
    assert process.wait(timeout=60) != 0
    log = process.log_path.read_text()
    assert "ValueError: Bad timestamp value" in log
    assert OFFLINE_MARKER not in log

    # The read acknowledges a pull only after it parsed every message of it: one garbled time
    # fails the whole pull, which Pub/Sub delivers again after the ack deadline.
    time.sleep(project.ack_deadline_s + 1)
    left = {message.message_id: message for message in pull_all(project)}
    quote_ids, dead_ids = stored(project)
    by_event_id = {q.event_id: message_id for q, message_id in zip(good, ids, strict=True)}
    ended = Counter(left.keys()) + Counter(by_event_id[e] for e in quote_ids.elements()) + dead_ids
    assert ended == Counter(ids)
    assert dict(left[ids[0]].attributes)["event_ts"] == "yesterday"
    print(
        f"garbled event time: {len(left)} of {len(ids)} messages back in Pub/Sub, "
        f"{quote_ids.total()} quote rows, {dead_ids.total()} dead letters",
        file=sys.stderr,
    )


if __name__ == "__main__":
    _main(*sys.argv[1:])
