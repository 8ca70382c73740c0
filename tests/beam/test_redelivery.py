"""Messages Pub/Sub delivers again after their ack deadline give one row each.

The BigQuery emulator is frozen while the load pipeline (a DirectRunner process) pulls a
backlog, longer than the ack deadline, so the job holds pulled messages it cannot store. Its
writes are a stage of their own (keyed by shard), so it pulls on meanwhile and is delivered
every message again. Then the writer is let go: each message gives one row."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess, start_pipeline_process
from tests.conftest import REPO
from tests.support.local_runs import provisioned_project, recent_quotes

pytestmark = pytest.mark.integration

ACK_DEADLINE_S = 10


def test_messages_delivered_again_after_their_ack_deadline_give_one_row_each(
    pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess, logs_dir: Path
) -> None:
    settings = provisioned_project("again", ack_deadline_s=ACK_DEADLINE_S)
    good = recent_quotes(13, "redelivery-test", 1000)
    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    futures = [publisher.publish(topic, q.to_json(), **q.pubsub_attributes()) for q in good]
    for future in futures:
        future.result(timeout=30)

    warehouse = bootstrap.build_warehouse(settings)

    def counts() -> tuple[int, int]:
        row = warehouse.query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM {dataset}.quotes"
        )[0]
        return int(row["n"]), int(row["d"])

    log = logs_dir / f"load-{settings.project}.log"
    env = {"QUOTESTREAM_PROJECT": settings.project, "QUOTESTREAM_TARGET": "local"}
    # A writer that does not answer: every message the job pulls meanwhile outlives its ack
    # deadline unacknowledged, and Pub/Sub delivers it again, to the same job.
    os.killpg(bigquery_emulator.pid, signal.SIGSTOP)
    try:
        job = start_pipeline_process(REPO, "load", log, env)
        # The job pulls on while its writes wait (the write step is a stage of its own), so
        # it is delivered what it holds again, as its log counts below.
        time.sleep(ACK_DEADLINE_S + 8)
    finally:
        os.killpg(bigquery_emulator.pid, signal.SIGCONT)
    try:
        # A busy machine: the job first looks up what its state cannot vouch for.
        deadline = time.monotonic() + 180
        while counts()[1] < len(good):
            assert time.monotonic() < deadline, f"only {counts()} of {len(good)} stored"
            time.sleep(1)
        # A second row for a redelivered message would show within this time.
        time.sleep(ACK_DEADLINE_S + 3)
        final = counts()
    finally:
        job.stop()

    assert final == (len(good), len(good))
    text = log.read_text(errors="replace")
    redelivered = sum(int(n) for n in re.findall(r"messages, (\d+) of them redelivered", text))
    found_stored = sum(
        int(n) for n in re.findall(r"(\d+) redelivered messages were stored already", text)
    )
    print(f"redelivered to the job: {redelivered}; found already stored: {found_stored}")
    assert redelivered >= len(good)
