"""Backfill against the API process and the BigQuery emulator: only what is missing is
inserted, and a second run of the same interval inserts nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import to_ms
from quotestream.domain.rows import quote_row
from tests.conftest import SEED

pytestmark = pytest.mark.integration


PAIRS = ("USD-BRL", "EUR-USD")


def test_backfilling_an_interval_twice_inserts_only_what_is_missing_once(provisioned: Any) -> None:
    settings = provisioned("backfill", PAIRS)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    start = end - timedelta(minutes=5)
    market = MarketSimulator(SEED, PAIR_CATALOG)
    expected = [
        q
        for pair in PAIRS
        for _, q in market.quotes_between(PAIR_CATALOG[pair], to_ms(start), to_ms(end))
    ]
    # The streaming load already wrote some of the interval (they sit in the streaming buffer).
    warehouse = bootstrap.build_warehouse(settings)
    streamed = expected[::7]
    warehouse.insert_rows(
        "quotes", [quote_row(q, to_ms(end)) for q in streamed], [q.event_id for q in streamed]
    )
    outside = market.quote(PAIR_CATALOG["USD-BRL"], to_ms(end) // 1000 + 5)  # after the interval
    warehouse.insert_rows("quotes", [quote_row(outside, to_ms(end))], [outside.event_id])

    first = bootstrap.build_backfill_service(settings).run(start, end, "run-1")
    assert first.fetched == len(expected)
    assert first.inserted == len(expected) - len(streamed)
    second = bootstrap.build_backfill_service(settings).run(start, end, "run-2")
    assert second.inserted == 0

    rows = warehouse.query(
        "SELECT event_id FROM {dataset}.quotes WHERE event_ts >= @start AND event_ts < @end",
        {"start": start, "end": end},
    )
    assert sorted(r["event_id"] for r in rows) == sorted(q.event_id for q in expected)
    assert (
        warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"] == len(expected) + 1
    )
    tables = warehouse.query(
        "SELECT table_name FROM {dataset}.INFORMATION_SCHEMA.TABLES "
        "WHERE table_name LIKE '%backfill%'"
    )
    assert tables == []
