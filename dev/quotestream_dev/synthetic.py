"""Valid quotes made up on the spot, stamped now: what the benchmarks push and what the demo
corrupts to show the dead-letter path."""

from __future__ import annotations

from quotestream.domain.market import MarketSimulator, quote_from_units
from quotestream.domain.pairs import PAIR_CATALOG, PairSpec
from quotestream.domain.quote import Quote, now_ms


def fresh_quote(spec: PairSpec, index: int, source: str) -> Quote:
    """A quote near the pair's reference price, two units wide; `index` varies the bid,
    `source` makes the event_id unique."""
    bid_units = int(float(spec.reference_price) * 10**spec.scale) + index % 7
    return quote_from_units(spec, bid_units, bid_units + 2, now_ms(), source)


def market_quotes(count: int, end_ms: int) -> list[Quote]:
    """`count` ticks of the simulated market ending at `end_ms`, spread evenly over the pairs,
    in event-time order: what a subscription holds after the load was away a while."""
    market = MarketSimulator(1, PAIR_CATALOG)
    per_pair = count // len(PAIR_CATALOG) + 1
    quotes: list[Quote] = []
    for spec in PAIR_CATALOG.values():
        start = end_ms - per_pair * spec.tick_interval_ms
        quotes += [quote for _, quote in market.quotes_between(spec, start, end_ms)][:per_pair]
    return sorted(quotes[:count], key=lambda quote: quote.event_ts_ms)
