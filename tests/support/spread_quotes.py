"""Valid quotes of the simulated market spread over a month of event time: what a producer
replaying history, or a misconfigured one, may publish straight to `quotes`."""

from __future__ import annotations

from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import Quote

DAY_MS = 86_400_000


def spread_quotes(count: int, end_ms: int) -> list[Quote]:
    """`count` ticks evenly spread over the 30 days before `end_ms`, the pairs in turn."""
    market = MarketSimulator(11, PAIR_CATALOG)
    specs = list(PAIR_CATALOG.values())
    step_ms = 30 * DAY_MS // count
    return [
        market.quote(spec, market.first_tick_at_or_after(spec, end_ms - 30 * DAY_MS + n * step_ms))
        for n, spec in ((n, specs[n % len(specs)]) for n in range(count))
    ]
