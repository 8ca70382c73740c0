"""The local load job, launched as the DAGs launch it, dead-letters quotes older than the
live freshness horizon (settings.max_quote_age_s) as `too_old`, payload kept, and loads the
rest: every message in exactly one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess, start_pipeline_process
from quotestream.domain.quote import now_ms
from tests.conftest import REPO
from tests.support.local_runs import provisioned_project, wait_until
from tests.support.spread_quotes import DAY_MS, spread_quotes

pytestmark = pytest.mark.integration

HORIZON_MS = 20 * DAY_MS
# Far enough from the horizon that publishing and loading cannot move a quote across it.
MARGIN_MS = 600_000


def test_quotes_older_than_the_horizon_are_dead_lettered_too_old_and_the_rest_loaded(
    pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess, logs_dir: Path
) -> None:
    settings = provisioned_project("horizon")
    now = now_ms()
    quotes = [
        q
        for q in spread_quotes(600, now - 3_600_000)
        if abs(now - q.event_ts_ms - HORIZON_MS) > MARGIN_MS
    ]
    too_old = {q.event_id for q in quotes if now - q.event_ts_ms > HORIZON_MS}
    assert 0 < len(too_old) < len(quotes)
    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    by_message = {
        publisher.publish(topic, q.to_json(), **q.pubsub_attributes()).result(timeout=30): q
        for q in quotes
    }
    warehouse = bootstrap.build_warehouse(settings)

    def stored() -> int:
        row = warehouse.query(
            "SELECT (SELECT COUNT(*) FROM {dataset}.quotes) "
            "+ (SELECT COUNT(*) FROM {dataset}.quotes_dead_letter) AS n"
        )[0]
        return int(row["n"])

    env = {
        "QUOTESTREAM_PROJECT": settings.project,
        "QUOTESTREAM_TARGET": "local",
        "QUOTESTREAM_MAX_QUOTE_AGE_S": str(HORIZON_MS // 1000),
    }
    job = start_pipeline_process(REPO, "load", logs_dir / f"load-{settings.project}.log", env)
    try:
        wait_until(lambda: stored() >= len(quotes), 90, "every message to be stored")
    finally:
        job.stop()

    loaded = [r["event_id"] for r in warehouse.query("SELECT event_id FROM {dataset}.quotes")]
    dead = warehouse.query(
        "SELECT message_id, payload, reason, stage FROM {dataset}.quotes_dead_letter"
    )
    assert sorted(loaded) == sorted({q.event_id for q in quotes} - too_old)
    assert sorted(json.loads(r["payload"])["event_id"] for r in dead) == sorted(too_old)
    assert {(r["reason"], r["stage"]) for r in dead} == {("too_old", "parse")}
    assert all(by_message[r["message_id"]].to_json().decode() == r["payload"] for r in dead)
