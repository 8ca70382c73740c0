"""Valid quotes made up on the spot, stamped now: what the benchmarks push and what the demo
corrupts to show the dead-letter path."""

from __future__ import annotations

from decimal import Decimal

from quotestream.domain.pairs import PairSpec
from quotestream.domain.quote import Quote, make_event_id, now_ms


def fresh_quote(spec: PairSpec, index: int, source: str) -> Quote:
    """A quote near the pair's reference price; `index` varies the bid, `source` makes the
    event_id unique."""
    event_ts_ms = now_ms()
    units = 10**spec.scale
    bid_units = int(float(spec.reference_price) * units) + index % 7
    bid = Decimal(bid_units).scaleb(-spec.scale)
    ask = Decimal(bid_units + 2).scaleb(-spec.scale)
    return Quote(
        event_id=make_event_id(spec.pair, event_ts_ms, source),
        pair=spec.pair,
        base=spec.base,
        quote_currency=spec.quote_currency,
        bid=bid,
        ask=ask,
        mid=((bid + ask) / 2).quantize(Decimal(1).scaleb(-spec.mid_scale)),
        spread=ask - bid,
        event_ts_ms=event_ts_ms,
        source=source,
    )
