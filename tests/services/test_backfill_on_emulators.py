"""Backfill against the API process and the BigQuery emulator: only what is missing is
inserted, none of it where another source served the interval, and a second run of the same
interval inserts nothing; reconciliation fails before and passes after."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from quotestream import bootstrap
from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
from quotestream.adapters.gcp.bigquery_queries import BigQueryQualityQueries
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import Quote, make_event_id, to_ms
from quotestream.domain.rows import quote_row
from quotestream.domain.thresholds import QualityThresholds
from quotestream.services.quality_checks import QUALITY_CHECKS, CheckedInterval, CheckResult
from quotestream.settings import Settings
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


def test_a_span_oanda_served_is_left_to_it_and_a_hole_in_the_api_stretch_is_filled(
    provisioned: Any,
) -> None:
    """USD-BRL switched to OANDA for a minute and back; apart from that, a hole of 20 s in the
    API's stretch. The backfill inserts the hole's quotes and none of the minute OANDA served."""
    settings = provisioned("backfill-failover", ("USD-BRL",))
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    start = end - timedelta(minutes=4)
    start_ms = to_ms(start)
    switch, back = start_ms + 60_000, start_ms + 120_000
    hole = range(start_ms + 180_000, start_ms + 200_000)
    market = MarketSimulator(SEED, PAIR_CATALOG)
    history = [q for _, q in market.quotes_between(PAIR_CATALOG["USD-BRL"], start_ms, to_ms(end))]
    api = [q for q in history if not switch <= q.event_ts_ms < back]
    oanda = [as_oanda(q) for q in history if switch <= q.event_ts_ms < back]
    stored = [q for q in api if q.event_ts_ms not in hole]
    warehouse = bootstrap.build_warehouse(settings)
    written = [*stored, *oanda]
    warehouse.insert_rows(
        "quotes", [quote_row(q, to_ms(end)) for q in written], [q.event_id for q in written]
    )
    missing = len(api) - len(stored)

    before = reconciliation(settings, start, end)
    first = bootstrap.build_backfill_service(settings).run(start, end, "run-1")
    second = bootstrap.build_backfill_service(settings).run(start, end, "run-2")
    after = reconciliation(settings, start, end)

    assert not before.passed
    assert f"({missing} missing)" in before.details
    assert (first.inserted, first.served_elsewhere) == (missing, len(oanda))
    assert (second.inserted, second.served_elsewhere) == (0, len(oanda))
    rows = warehouse.query(
        "SELECT event_id FROM {dataset}.quotes WHERE event_ts >= @start AND event_ts < @end",
        {"start": start, "end": end},
    )
    assert sorted(r["event_id"] for r in rows) == sorted(q.event_id for q in [*api, *oanda])
    assert after.passed, after.details
    assert f"another source supplied {len(oanda)} in 1 spans" in after.details


def as_oanda(quote: Quote) -> Quote:
    """The quote as OANDA's stream would have given it: 300 ms later, under its own source."""
    moment = quote.event_ts_ms + 300
    return replace(
        quote,
        event_ts_ms=moment,
        source="oanda",
        event_id=make_event_id(quote.pair, moment, "oanda"),
    )


def reconciliation(settings: Settings, start: datetime, end: datetime) -> CheckResult:
    warehouse = cast(BigQueryWarehouse, bootstrap.build_warehouse(settings))
    (check,) = [check for check in QUALITY_CHECKS if check.name == "reconciliation"]
    interval = CheckedInterval(
        BigQueryQualityQueries(warehouse),
        bootstrap.build_quote_source(settings),
        settings.pairs,
        QualityThresholds(),
        start,
        end,
        settings.quote_source,
    )
    (result,) = check.run(interval)
    return result
