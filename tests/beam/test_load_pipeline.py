"""The load pipeline end to end on the DirectRunner: Pub/Sub emulator -> Beam -> BigQuery
emulator, run as the launcher runs it (a subprocess) for a bounded time."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess, start_pipeline_process
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from tests.conftest import REPO
from tests.support.corpus import bad_messages
from tests.support.local_runs import provisioned_project

pytestmark = pytest.mark.integration


def test_exactly_the_good_distinct_quotes_and_exactly_the_bad_ones_are_loaded(
    pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess, logs_dir: Path
) -> None:
    settings = provisioned_project("load")
    now = now_ms()
    market = MarketSimulator(3, PAIR_CATALOG)
    good = [
        q
        for spec in PAIR_CATALOG.values()
        for _, q in market.quotes_between(spec, now - 90_000, now - 30_000)
    ][:400]
    # Pub/Sub refuses a message with neither data nor attributes: it cannot reach the pipeline.
    bad = [(message, reason) for message, reason in bad_messages(now) if message.data]
    duplicated = good[:40]

    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    futures = [
        publisher.publish(topic, q.to_json(), **q.pubsub_attributes()) for q in good + duplicated
    ]
    futures += [publisher.publish(topic, message.data, **message.attributes) for message, _ in bad]
    for future in futures:
        future.result(timeout=30)

    env = {
        "QUOTESTREAM_PROJECT": settings.project,
        "QUOTESTREAM_TARGET": "local",
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.address,
        "BIGQUERY_EMULATOR_HOST": f"http://{bigquery_emulator.address}",
    }
    job = start_pipeline_process(REPO, "load", logs_dir / f"load-{settings.project}.log", env)
    warehouse = bootstrap.build_warehouse(settings)
    expected_rows = len(good) + len(bad)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            counts = warehouse.query(
                "SELECT (SELECT COUNT(*) FROM {dataset}.quotes) AS quotes, "
                "(SELECT COUNT(*) FROM {dataset}.quotes_dead_letter) AS dead"
            )[0]
            if counts["quotes"] + counts["dead"] >= expected_rows:
                break
            time.sleep(2)
        time.sleep(5)  # anything extra (a duplicate) would show up now
    finally:
        job.stop()

    quotes = warehouse.query("SELECT event_id, CAST(bid AS STRING) AS bid FROM {dataset}.quotes")
    assert Counter(r["event_id"] for r in quotes) == Counter(q.event_id for q in good)
    by_id = {q.event_id: q for q in good}
    assert all(str(by_id[r["event_id"]].bid).rstrip("0") == r["bid"].rstrip("0") for r in quotes)
    dead = warehouse.query("SELECT reason, stage FROM {dataset}.quotes_dead_letter")
    assert Counter(r["reason"] for r in dead) == Counter(reason for _, reason in bad)
    assert {r["stage"] for r in dead} == {"parse"}
    bars = warehouse.query(
        "SELECT pair, SUM(tick_count) AS ticks FROM {dataset}.quote_bars_1m GROUP BY pair"
    )
    assert {r["pair"] for r in bars} <= set(PAIR_CATALOG)
