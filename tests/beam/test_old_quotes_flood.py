"""A flood of valid quotes spread over a month of event time, published straight to the
`quotes` topic, through the local load job: every message ends in exactly one table, nothing
twice, and the writer's lookups of old quotes cost a query a batch, not one per span of event
time they touch (a lookup by span made 3,000 such quotes a thousand queries)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess, start_pipeline_process
from quotestream.beam.sinks import REMEMBER_MS
from quotestream.domain.quote import Quote, now_ms
from tests.conftest import REPO
from tests.support.local_runs import provisioned_project, wait_until
from tests.support.spread_quotes import DAY_MS, spread_quotes

pytestmark = pytest.mark.integration

FLOOD = 3_000
WAVES = 10
COPIES = 200
# Past the flood's oldest quote: every quote reaches the writer, whose lookups are on trial.
HORIZON_S = 31 * DAY_MS // 1000
# A lookup of the quote writer, as the job's log tells it: rows asked for, stored already.
LOOKUP_LOG = re.compile(r"quotes: looked up (\d+) of \d+ rows, [^:]*: (\d+) stored")


def test_a_flood_of_quotes_a_month_apart_is_stored_once_with_a_query_a_batch(
    pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess, logs_dir: Path
) -> None:
    settings = provisioned_project("flood")
    flood = spread_quotes(FLOOD, now_ms() - 3_600_000)
    assert len({q.event_id for q in flood}) == FLOOD
    warehouse = bootstrap.build_warehouse(settings)

    def stored() -> tuple[int, int, int]:
        row = warehouse.query(
            "SELECT (SELECT COUNT(*) FROM {dataset}.quotes) AS quotes, "
            "(SELECT COUNT(DISTINCT event_id) FROM {dataset}.quotes) AS distinct_quotes, "
            "(SELECT COUNT(*) FROM {dataset}.quotes_dead_letter) AS dead"
        )[0]
        return int(row["quotes"]), int(row["distinct_quotes"]), int(row["dead"])

    def settled() -> int:
        quotes, _, dead = stored()
        return quotes + dead

    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)

    def publish(quotes: list[Quote]) -> None:
        futures = [publisher.publish(topic, q.to_json(), **q.pubsub_attributes()) for q in quotes]
        for future in futures:
            future.result(timeout=30)

    log = logs_dir / f"load-{settings.project}.log"
    env = {
        "QUOTESTREAM_PROJECT": settings.project,
        "QUOTESTREAM_TARGET": "local",
        "QUOTESTREAM_MAX_QUOTE_AGE_S": str(HORIZON_S),
    }
    started = time.monotonic()
    job = start_pipeline_process(REPO, "load", log, env)
    try:
        # In waves once the job runs, so that it writes them in several batches.
        wave = FLOOD // WAVES
        publish(flood[:wave])
        wait_until(lambda: settled() > 0, 60, "the job to store its first batch")
        for first in range(wave, FLOOD, wave):
            publish(flood[first : first + wave])
            time.sleep(0.5)
        wait_until(lambda: settled() >= FLOOD, 90, "the flood to be stored")
        # Copies of stored quotes, as a client's retries: found stored, not inserted again.
        # Past the writer's memory of what it wrote, which would find the copies unasked.
        time.sleep(REMEMBER_MS / 1000 + 1)
        publish(flood[:COPIES])
        wait_until(
            lambda: sum(found for _, found in _lookups(log)) >= COPIES,
            60,
            "the copies to be found stored",
        )
        time.sleep(3)  # a second row for anything would show by now
        quotes, distinct, dead = stored()
    finally:
        job.stop()
    elapsed = time.monotonic() - started

    # Every message in exactly one table, once: the horizon lets them all through.
    assert (quotes, distinct, dead) == (FLOOD, FLOOD, 0)
    loaded = warehouse.query("SELECT event_id FROM {dataset}.quotes")
    assert {row["event_id"] for row in loaded} == {q.event_id for q in flood}
    lookups = _lookups(log)
    queries = _lookups_of_quotes(settings.project)
    print(
        f"{FLOOD} quotes over 30 days and {COPIES} copies in {elapsed:.0f} s: "
        f"{len(lookups)} batches looked up ({sum(a for a, _ in lookups)} rows, "
        f"{sum(f for _, f in lookups)} found stored), {queries} queries of `quotes` by the job"
    )
    assert sum(asked for asked, _ in lookups) == FLOOD + COPIES
    assert len(lookups) >= 3
    # One query a batch; the source looks up only what Pub/Sub delivers again.
    assert queries <= len(lookups) + 2


def _lookups(log: Path) -> list[tuple[int, int]]:
    """Each lookup of the quote writer so far: (rows asked for, rows found stored)."""
    text = log.read_text(errors="replace")
    return [(int(asked), int(found)) for asked, found in LOOKUP_LOG.findall(text)]


def _lookups_of_quotes(project: str) -> int:
    """The lookups of stored ids in `quotes` the emulator ran for the project (the writer's
    and the source's; not the test's own counts, nor the bars' one read of what is stored a
    pair a job start)."""
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=os.environ["BIGQUERY_EMULATOR_HOST"]),
    )
    try:
        texts = [
            job.query
            for job in client.list_jobs(project=project, all_users=True)
            if isinstance(job, bigquery.QueryJob)
        ]
    finally:
        client.close()
    return sum(1 for text in texts if "`.quotes " in text and "AS row_id" in text)
