"""The checks of how quotes move, over the in-memory fakes: an hour of the simulated market
passes every one with margin, and each way of breaking it fails the check aimed at it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from quotestream.domain.quote import format_ts, to_ms
from quotestream.domain.thresholds import QualityThresholds
from quotestream.services.quality import DataQualityFailed, DataQualityService
from quotestream.services.quality_checks import CheckResult
from tests.support.fakes import InMemoryQualityQueries, InMemoryQuoteSource, InMemoryWarehouse
from tests.support.market_data import (
    BROKEN,
    MARKET,
    TRIANGLE,
    Broken,
    MarketData,
    bar_row,
)
from tests.support.rows import MINUTE_MS

pytestmark = pytest.mark.unit


def run_checks(data: MarketData) -> list[CheckResult]:
    """Every check of the interval, over a warehouse holding `data`, against the API's
    history of the unbroken market."""
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows("quotes", data.quotes, [row["event_id"] for row in data.quotes])
    warehouse.insert_rows("quote_bars_1m", data.bars)
    served = [
        quote.to_dict()
        for pair in data.pairs
        for _, quote in MARKET.quotes_between(
            MARKET.pairs[pair], to_ms(data.start), to_ms(data.end)
        )
    ]
    service = DataQualityService(
        InMemoryQualityQueries(warehouse), warehouse, InMemoryQuoteSource(served), data.pairs
    )
    try:
        return service.run(data.start, data.end, "run", check_freshness=False)
    except DataQualityFailed as failed:
        return failed.failures


def test_an_hour_of_the_simulated_market_passes_every_market_check_with_margin() -> None:
    data = MarketData.simulated(60, (*TRIANGLE, "BTC-USD")).with_bars()
    results = {(r.check_name, r.pair): r for r in run_checks(data)}
    assert [str(r) for r in results.values() if not r.passed] == []
    limits = QualityThresholds()
    assert results["cross_rate", "EUR-BRL"].observed < limits.max_cross_rate_ratio / 3
    for pair in data.pairs:
        assert results["price_jump", pair].observed < limits.max_jump_deviations * 0.8
        assert results["tick_gaps", pair].observed == 0
        assert "60 stored bars, 0 differ" in results["bars", pair].details
    assert ("cross_rate", "BTC-USD") not in results


@pytest.mark.parametrize("broken", BROKEN, ids=lambda broken: broken.breakage.__name__)
def test_each_breakage_fails_the_check_aimed_at_it(broken: Broken) -> None:
    data = MarketData.simulated(10, broken.pairs)
    broken.breakage(data)
    failures = {(r.check_name, r.pair): r for r in run_checks(data) if not r.passed}
    assert set(failures) == broken.failing
    aimed = failures[broken.aimed_at]
    assert aimed.observed > aimed.threshold


def test_a_minute_a_relaunched_load_wrote_in_two_partial_bars_is_reported_not_failed() -> None:
    """A drained load writes the ticks of a minute it has seen as pane 0; its successor opens
    the minute again, as pane 0 of the rest: the fuller one is compared, and it holds part of
    the minute's quotes, within their prices."""
    data = MarketData.simulated(10, ("USD-BRL",)).with_bars()
    minute = data.start_ms + 3 * MINUTE_MS
    ticks = sorted(
        (row for row in data.of("USD-BRL") if minute <= to_ms_of(row) < minute + MINUTE_MS),
        key=to_ms_of,
    )
    data.bars = [bar for bar in data.bars if bar["window_start"] != format_ts(minute)]
    data.bars += [
        bar_row("USD-BRL", minute, ticks[:40], 0),
        bar_row("USD-BRL", minute, ticks[40:], 0),
    ]
    results = {(r.check_name, r.pair): r for r in run_checks(data)}
    bars = results["bars", "USD-BRL"]
    assert bars.passed, bars.details
    assert "0 differ from their quotes, 1 hold part of their quotes" in bars.details

    # A bar of fewer ticks with a price the minute's quotes never had explains nothing.
    high = bar_row("USD-BRL", minute, ticks[:40], 1)
    data.bars.append({**high, "high": str(Decimal(high["high"]) * 2)})
    assert not {(r.check_name, r.pair): r for r in run_checks(data)}["bars", "USD-BRL"].passed


def to_ms_of(row: dict[str, str]) -> int:
    return to_ms(datetime.fromisoformat(row["event_ts"]))
