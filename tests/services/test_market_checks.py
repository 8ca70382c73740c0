"""The checks of how quotes move, over the in-memory fakes: an hour of the simulated market
passes every one with margin, and each way of breaking it fails the check aimed at it."""

from __future__ import annotations

import pytest

from quotestream.domain.quote import to_ms
from quotestream.services.quality import (
    CheckResult,
    DataQualityFailed,
    DataQualityService,
    Thresholds,
)
from tests.support.fakes import InMemoryQuoteQueries, InMemoryQuoteSource, InMemoryWarehouse
from tests.support.market_data import BROKEN, MARKET, TRIANGLE, Broken, MarketData

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
        InMemoryQuoteQueries(warehouse), warehouse, InMemoryQuoteSource(served), data.pairs
    )
    try:
        return service.run(data.start, data.end, "run", check_freshness=False)
    except DataQualityFailed as failed:
        return failed.failures


def test_an_hour_of_the_simulated_market_passes_every_market_check_with_margin() -> None:
    data = MarketData.simulated(60, (*TRIANGLE, "BTC-USD")).with_bars()
    results = {(r.check_name, r.pair): r for r in run_checks(data)}
    assert [str(r) for r in results.values() if not r.passed] == []
    limits = Thresholds()
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
