"""The same quotes published again after BigQuery's insert-id dedup has forgotten them (more
than a minute later: a client's retry, a relay publish that timed out but went through) are
stored once: the load looks up copies of quotes older than that dedup covers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.domain import PAIR_CATALOG
from quotestream.ports.jobs import StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream_dev.synthetic import fresh_quote
from tests.support.local_runs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD = JOB_NAMES["load"]
# BigQuery's insert-id dedup (and the emulator's) forgets after about a minute.
AFTER_THE_INSERT_ID_WINDOW_S = 75


def test_quotes_published_again_after_the_insert_id_window_are_stored_once(
    job_target: Any,
) -> None:
    settings = job_target("republish")
    runner = bootstrap.build_job_runner(settings)
    warehouse = bootstrap.build_warehouse(settings)
    quotes = [
        fresh_quote(spec, index, f"republish{index}")
        for index, spec in enumerate(list(PAIR_CATALOG.values()) * 20)
    ]
    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)

    def publish() -> list[str]:
        futures = [publisher.publish(topic, q.to_json(), **q.pubsub_attributes()) for q in quotes]
        return [future.result(timeout=30) for future in futures]

    def counts() -> tuple[int, int]:
        row = warehouse.query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS ids FROM {dataset}.quotes"
        )[0]
        return int(row["n"] or 0), int(row["ids"] or 0)

    runner.launch(LOAD, "load", [])
    try:
        first = publish()
        wait_until(lambda: counts() == (len(quotes), len(quotes)), 60, "the first copies")
        stored_at = time.monotonic()
        time.sleep(AFTER_THE_INSERT_ID_WINDOW_S)
        second = publish()
        assert not set(first) & set(second), "Pub/Sub gave the copies new message ids"
        log = Path(runner.find(LOAD).detail)
        wait_until(
            lambda: "not written again" in log.read_text(errors="replace"),
            60,
            "the second copies to be found stored",
        )
        time.sleep(3)  # a second insert, were there one, would have landed by now
        final = counts()
    finally:
        runner.stop(LOAD, StopMode.CANCEL)
    print(
        f"{len(quotes)} quotes published twice, {time.monotonic() - stored_at:.0f} s apart: "
        f"{final[0]} rows, {final[1]} distinct"
    )
    assert final == (len(quotes), len(quotes))
