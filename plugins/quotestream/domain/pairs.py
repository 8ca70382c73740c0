"""The instruments quotestream knows: price scale, a plausible starting level, and how they move."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One currency pair. `scale` is the number of decimals its bid and ask are quoted with."""

    pair: str
    scale: int
    reference_price: Decimal
    # Typical relative move over one day, and the typical spread in basis points of mid.
    daily_volatility: float
    spread_bps: float
    # Mean time between ticks; the simulator jitters ticks inside each interval.
    tick_interval_ms: int

    @property
    def base(self) -> str:
        return self.pair.split("-", 1)[0]

    @property
    def quote_currency(self) -> str:
        return self.pair.split("-", 1)[1]

    @property
    def mid_scale(self) -> int:
        # Half the sum of two prices at `scale` decimals is exact at one decimal more.
        return self.scale + 1


PAIR_CATALOG: dict[str, PairSpec] = {
    spec.pair: spec
    for spec in (
        PairSpec("USD-BRL", 4, Decimal("5.3500"), 0.008, 3.0, 1000),
        # A cross of EUR-USD and USD-BRL (see `cross_legs`): its price is theirs multiplied.
        PairSpec("EUR-BRL", 4, Decimal("5.8048"), 0.009, 4.0, 2000),
        PairSpec("EUR-USD", 5, Decimal("1.08500"), 0.005, 0.8, 500),
        PairSpec("GBP-USD", 5, Decimal("1.27000"), 0.006, 1.0, 750),
        PairSpec("USD-JPY", 3, Decimal("151.250"), 0.006, 1.0, 750),
        PairSpec("BTC-USD", 2, Decimal("64000.00"), 0.03, 2.0, 250),
    )
}

DEFAULT_PAIRS: tuple[str, ...] = tuple(PAIR_CATALOG)


def split_pairs(text: str) -> tuple[str, ...]:
    """`"usd-brl, EUR-BRL"` -> `("USD-BRL", "EUR-BRL")`, as settings and URLs write pairs."""
    return tuple(part.strip().upper() for part in text.split(",") if part.strip())


def ticks_per_s(pairs: Iterable[str]) -> float:
    """The quotes a second these pairs tick at together."""
    return sum(1000 / PAIR_CATALOG[pair].tick_interval_ms for pair in pairs)


def cross_legs(pairs: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The triangles among `pairs`: cross A-C -> legs (A-B, B-C), the cross's price being
    the product of theirs. A leg is never a cross itself, so prices resolve in one step."""
    named = set(pairs)
    by_base: dict[str, list[str]] = {}
    for pair in sorted(named):
        by_base.setdefault(pair.split("-", 1)[0], []).append(pair)
    candidates = {}
    for pair in sorted(named):
        base, quote_currency = pair.split("-", 1)
        for first in by_base.get(base, []):
            middle = first.split("-", 1)[1]
            if f"{middle}-{quote_currency}" in named:
                candidates[pair] = (first, f"{middle}-{quote_currency}")
                break
    return {
        cross: legs
        for cross, legs in candidates.items()
        if not any(leg in candidates for leg in legs)
    }
