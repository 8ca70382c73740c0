"""The checks of how quotes move, as BigQuery SQL on the emulator: the simulated market
passes them, and each way of breaking it fails the check aimed at it, with the figures."""

from __future__ import annotations

from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.domain.schemas import QUOTE_BARS_1M, QUOTES
from quotestream.domain.thresholds import QualityThresholds
from quotestream.services.quality import DataQualityFailed
from quotestream.services.quality_checks import CheckResult
from tests.support.market_data import BROKEN, TRIANGLE, Broken, MarketData

pytestmark = pytest.mark.integration

MARKET_CHECKS = {"cross_rate", "price_jump", "stale_pair", "tick_gaps", "bars"}


def run_checks(provisioned: Any, data: MarketData) -> list[CheckResult]:
    """Every check of the interval over a fresh dataset holding `data`; the API's history
    is the unbroken market's."""
    settings = provisioned("market", data.pairs)
    warehouse = bootstrap.build_warehouse(settings)
    warehouse.load_rows(QUOTES.name, QUOTES, data.quotes)
    if data.bars:
        warehouse.load_rows(QUOTE_BARS_1M.name, QUOTE_BARS_1M, data.bars)
    service = bootstrap.build_data_quality_service(settings)
    try:
        return service.run(data.start, data.end, "run", check_freshness=False)
    except DataQualityFailed as failed:
        return failed.failures


def test_the_simulated_market_passes_every_market_check(provisioned: Any) -> None:
    data = MarketData.simulated(10, TRIANGLE).with_bars()
    results = run_checks(provisioned, data)
    assert [str(r) for r in results if not r.passed] == []
    market = {(r.check_name, r.pair): r for r in results if r.check_name in MARKET_CHECKS}
    assert set(market) == {("cross_rate", "EUR-BRL")} | {
        (check, pair) for check in MARKET_CHECKS - {"cross_rate"} for pair in TRIANGLE
    }
    limits = QualityThresholds()
    assert market["cross_rate", "EUR-BRL"].observed < limits.max_cross_rate_ratio / 3
    assert "0 of 10 minutes off EUR-USD x USD-BRL" in market["cross_rate", "EUR-BRL"].details
    for pair in TRIANGLE:
        assert 0 < market["price_jump", pair].observed < limits.max_jump_deviations * 0.8
        # The first minute's pane 1 restated pane 0: compared, and equal to its quotes.
        assert "10 stored bars, 0 differ" in market["bars", pair].details
        assert market["tick_gaps", pair].observed == 0


@pytest.mark.parametrize("broken", BROKEN, ids=lambda broken: broken.breakage.__name__)
def test_each_breakage_fails_the_check_aimed_at_it(provisioned: Any, broken: Broken) -> None:
    data = MarketData.simulated(10, broken.pairs)
    broken.breakage(data)
    failures = {(r.check_name, r.pair): r for r in run_checks(provisioned, data) if not r.passed}
    assert set(failures) == broken.failing
    aimed = failures[broken.aimed_at]
    assert aimed.observed > aimed.threshold
    expected_details = {
        "cross_rate": "10 of 10 minutes off EUR-USD x USD-BRL",
        "price_jump": "robust deviations (19",  # a 2 % jump: about 198 bp
        "stale_pair": "s behind the newest of all pairs",
        "tick_gaps": "1 gaps over 1.5 intervals of 1000 ms, 3 ticks missing",
        "bars": "1 differ from their quotes",
    }
    assert expected_details[aimed.check_name] in aimed.details
