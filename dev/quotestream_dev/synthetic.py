"""Valid quotes made up on the spot, stamped now: what the benchmarks push and what the demo
corrupts to show the dead-letter path."""

from __future__ import annotations

from quotestream.domain.market import quote_from_units
from quotestream.domain.pairs import PairSpec
from quotestream.domain.quote import Quote, now_ms


def fresh_quote(spec: PairSpec, index: int, source: str) -> Quote:
    """A quote near the pair's reference price, two units wide; `index` varies the bid,
    `source` makes the event_id unique."""
    bid_units = int(float(spec.reference_price) * 10**spec.scale) + index % 7
    return quote_from_units(spec, bid_units, bid_units + 2, now_ms(), source)
