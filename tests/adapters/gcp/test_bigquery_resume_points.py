"""Where the extract resumes, asked of the BigQuery emulator and of the in-memory fake: both
answer alike from the same rows, counting only the extract's own source's quotes; a dataset
never provisioned holds nothing to resume from."""

from __future__ import annotations

import uuid

import pytest

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import QUOTES
from quotestream.ports.queries import ResumePoints
from quotestream.settings import Settings
from tests.support.fakes import InMemoryResumePoints, InMemoryWarehouse
from tests.support.local_runs import fresh_warehouse
from tests.support.rows import quote_at

pytestmark = pytest.mark.integration

NOW = now_ms() // 1000 * 1000
HOUR_MS = 3_600_000
ROWS = [
    quote_at(NOW - 5_000),
    quote_at(NOW - 2_000),
    quote_at(NOW - 30_000, pair="EUR-USD"),
    quote_at(NOW - 2 * HOUR_MS, pair="GBP-USD"),  # beyond an hour's look-back
    # Newer, of other sources: pushed to the relay, or another feed's.
    quote_at(NOW - 1_000, source="relay"),
    quote_at(NOW - 1_000, pair="EUR-USD", source="oanda"),
    quote_at(NOW - 1_000, pair="BTC-USD", source="relay"),
]


def test_the_newest_stored_quote_per_pair_within_the_look_back(
    bigquery_emulator: ServiceProcess,
) -> None:
    settings, warehouse = fresh_warehouse("resume")
    memory = InMemoryWarehouse()
    for store in (warehouse, memory):
        assert store.insert_rows(QUOTES.name, ROWS) == []
    both: list[ResumePoints] = [
        bootstrap.build_resume_points(settings),
        InMemoryResumePoints(memory),
    ]
    for points in both:
        assert points.newest_event_per_pair(NOW - HOUR_MS, "test") == {
            "USD-BRL": NOW - 2_000,
            "EUR-USD": NOW - 30_000,
        }
        assert points.newest_event_per_pair(NOW - 3 * HOUR_MS, "test")["GBP-USD"] == (
            NOW - 2 * HOUR_MS
        )
        assert points.newest_event_per_pair(NOW - HOUR_MS, "relay") == {
            "USD-BRL": NOW - 1_000,
            "BTC-USD": NOW - 1_000,
        }
        points.close()


def test_a_dataset_never_provisioned_holds_nothing_to_resume_from(
    bigquery_emulator: ServiceProcess,
) -> None:
    settings = Settings(project=f"unprovisioned-{uuid.uuid4().hex[:8]}", target="local")
    points = bootstrap.build_resume_points(settings)
    try:
        assert points.newest_event_per_pair(NOW - HOUR_MS, "sim") == {}
    finally:
        points.close()
