from __future__ import annotations

from decimal import Decimal

import pytest

from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.market import MarketSimulator
from quotestream.domain.pairs import PairSpec, cross_legs

pytestmark = pytest.mark.unit

HOUR_MS = 3_600_000
START_MS = 1_795_000_000_000


def test_the_same_seed_serves_the_same_history_and_another_seed_does_not() -> None:
    spec = PAIR_CATALOG["EUR-USD"]
    first = list(MarketSimulator(7, PAIR_CATALOG).quotes_between(spec, START_MS, START_MS + 60_000))
    again = list(MarketSimulator(7, PAIR_CATALOG).quotes_between(spec, START_MS, START_MS + 60_000))
    other = list(MarketSimulator(8, PAIR_CATALOG).quotes_between(spec, START_MS, START_MS + 60_000))
    assert first == again
    assert [q.mid for _, q in first] != [q.mid for _, q in other]


def test_a_tick_does_not_depend_on_what_was_computed_before() -> None:
    spec = PAIR_CATALOG["USD-BRL"]
    cold = MarketSimulator(7, PAIR_CATALOG).quote(spec, 1_795_000_123)
    warm_market = MarketSimulator(7, PAIR_CATALOG)
    list(warm_market.quotes_between(spec, START_MS, START_MS + HOUR_MS))
    assert warm_market.quote(spec, 1_795_000_123) == cold


@pytest.mark.parametrize("pair", list(PAIR_CATALOG))
def test_an_hour_of_quotes_is_valid_increasing_and_plausible(pair: str) -> None:
    spec = PAIR_CATALOG[pair]
    market = MarketSimulator(42, PAIR_CATALOG)
    quotes = [q for _, q in market.quotes_between(spec, START_MS, START_MS + HOUR_MS)]
    assert abs(len(quotes) - HOUR_MS / spec.tick_interval_ms) <= 1
    times = [q.event_ts_ms for q in quotes]
    assert times == sorted(set(times))
    assert all(START_MS <= t < START_MS + HOUR_MS for t in times)
    for quote in quotes[:: max(1, len(quotes) // 200)]:
        assert parse_quote(quote.to_json(), now_ms=START_MS + HOUR_MS) == quote
    mids = [float(q.mid) for q in quotes]
    assert max(mids) / min(mids) < 1 + 10 * spec.daily_volatility
    assert 0.5 < mids[0] / float(spec.reference_price) < 2


def test_latest_is_the_last_tick_at_or_before_now() -> None:
    spec = PAIR_CATALOG["BTC-USD"]
    market = MarketSimulator(1, PAIR_CATALOG)
    now = START_MS + 12_345
    ticks = list(market.quotes_between(spec, START_MS, now + 1))
    assert market.latest(spec, now) == ticks[-1][1]


def test_the_catalog_has_one_triangle_and_triangles_are_found_whatever_the_names() -> None:
    assert cross_legs(PAIR_CATALOG) == {"EUR-BRL": ("EUR-USD", "USD-BRL")}
    assert cross_legs(["USD-BRL", "EUR-BRL"]) == {}
    # A pair that is a leg of one triangle is never the cross of another.
    assert cross_legs(["EUR-GBP", "GBP-USD", "EUR-USD", "USD-BRL", "EUR-BRL"]) == {
        "EUR-USD": ("EUR-GBP", "GBP-USD")
    }
    for cross, (first, second) in cross_legs(PAIR_CATALOG).items():
        implied = PAIR_CATALOG[first].reference_price * PAIR_CATALOG[second].reference_price
        quantum = Decimal(1).scaleb(-PAIR_CATALOG[cross].scale)
        assert PAIR_CATALOG[cross].reference_price == implied.quantize(quantum)


@pytest.mark.parametrize("configured", [PAIR_CATALOG, {"EUR-BRL": PAIR_CATALOG["EUR-BRL"]}])
def test_a_cross_is_its_legs_multiplied_at_their_latest_ticks(
    configured: dict[str, PairSpec],
) -> None:
    cross, (first, second) = next(iter(cross_legs(PAIR_CATALOG).items()))
    market = MarketSimulator(5, configured)
    legs = MarketSimulator(5, PAIR_CATALOG)
    for _, quote in market.quotes_between(PAIR_CATALOG[cross], START_MS, START_MS + HOUR_MS):
        at = {pair: legs.latest(PAIR_CATALOG[pair], quote.event_ts_ms) for pair in (first, second)}
        implied = float(at[first].mid) * float(at[second].mid)
        # Each mid is off the exact product by at most half a price unit of its bid and ask.
        rounding = sum(
            10.0 ** -PAIR_CATALOG[q.pair].scale / float(q.mid) for q in (quote, *at.values())
        )
        assert abs(float(quote.mid) / implied - 1) < rounding
