"""A deterministic market: every quote is a pure function of (seed, pair, tick index).

Prices follow a seeded random walk: slow multi-scale noise fixes an anchor every
`_BLOCK` ticks, and a Brownian bridge walks from one anchor to the next. Any tick can be
computed without the ticks before it, so the history of any past interval is served again
exactly, with no stored state: what makes backfills and reconciliation testable.

A cross whose two legs are in the catalog (EUR-BRL = EUR-USD x USD-BRL) does not walk: its
mid at its own tick time is the product of its legs' mids at their latest tick at or before
that time, so the market holds no arbitrage and a cross is still a pure function of its tick.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Mapping
from decimal import Decimal
from functools import lru_cache

from quotestream.domain.pairs import PAIR_CATALOG, PairSpec, cross_legs
from quotestream.domain.quote import Quote, make_event_id

_BLOCK = 64
_DAY_MS = 86_400_000
# Periods of the anchor noise, in days, from intraday swings to monthly trends.
_ANCHOR_PERIODS_DAYS = (1 / 24, 1 / 4, 1.0, 7.0, 30.0)
# Legs from the catalog, configured or not: a cross is priced alike whatever the pair list.
_CROSS_LEGS = {
    cross: (PAIR_CATALOG[first], PAIR_CATALOG[second])
    for cross, (first, second) in cross_legs(PAIR_CATALOG).items()
}


class MarketSimulator:
    def __init__(self, seed: int, pairs: Mapping[str, PairSpec], source: str = "sim") -> None:
        self.seed = seed
        self.pairs = dict(pairs)
        self.source = source

    def tick_time_ms(self, spec: PairSpec, tick: int) -> int:
        # Jitter inside the first half of each interval keeps tick times strictly increasing.
        jitter = int(_uniform(self.seed, spec.pair, "tick", tick) * (spec.tick_interval_ms // 2))
        return tick * spec.tick_interval_ms + jitter

    def first_tick_at_or_after(self, spec: PairSpec, moment_ms: int) -> int:
        tick = moment_ms // spec.tick_interval_ms
        return tick if self.tick_time_ms(spec, tick) >= moment_ms else tick + 1

    def latest(self, spec: PairSpec, now_ms: int) -> Quote:
        tick = now_ms // spec.tick_interval_ms
        if self.tick_time_ms(spec, tick) > now_ms:
            tick -= 1
        return self.quote(spec, tick)

    def quotes_between(
        self, spec: PairSpec, start_ms: int, end_ms: int, from_tick: int | None = None
    ) -> Iterator[tuple[int, Quote]]:
        """(tick, quote) for every tick with start <= event time < end, from `from_tick` on."""
        tick = self.first_tick_at_or_after(spec, start_ms)
        if from_tick is not None:
            tick = max(tick, from_tick)
        while self.tick_time_ms(spec, tick) < end_ms:
            yield tick, self.quote(spec, tick)
            tick += 1

    def quote(self, spec: PairSpec, tick: int) -> Quote:
        event_ts_ms = self.tick_time_ms(spec, tick)
        mid_units = self._mid(spec, tick, event_ts_ms) * 10**spec.scale
        spread_factor = 0.8 + 0.4 * _uniform(self.seed, spec.pair, "spread", tick)
        half_spread_units = mid_units * spec.spread_bps * spread_factor / 20_000
        bid_units = max(1, math.floor(mid_units - half_spread_units))
        ask_units = max(bid_units + 1, math.ceil(mid_units + half_spread_units))
        return quote_from_units(spec, bid_units, ask_units, event_ts_ms, self.source)

    def _mid(self, spec: PairSpec, tick: int, event_ts_ms: int) -> float:
        """The unrounded mid at a tick: walked, or for a cross its legs' mids multiplied."""
        legs = _CROSS_LEGS.get(spec.pair)
        if legs is None:
            return self._walked_mid(spec, tick)
        mid = 1.0
        for leg in legs:
            leg_tick = event_ts_ms // leg.tick_interval_ms
            if self.tick_time_ms(leg, leg_tick) > event_ts_ms:
                leg_tick -= 1
            mid *= self._walked_mid(leg, leg_tick)
        return mid

    def _walked_mid(self, spec: PairSpec, tick: int) -> float:
        block, position = divmod(tick, _BLOCK)
        return float(spec.reference_price) * math.exp(_block_path(self.seed, spec, block)[position])


def quote_from_units(
    spec: PairSpec, bid_units: int, ask_units: int, event_ts_ms: int, source: str
) -> Quote:
    """The quote with these prices, counted in units of the pair's last price decimal: mid and
    spread derived as the gate expects them, the event_id from the tick's identity."""
    bid = Decimal(bid_units).scaleb(-spec.scale)
    ask = Decimal(ask_units).scaleb(-spec.scale)
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


def _uniform(seed: int, pair: str, stream: str, index: int) -> float:
    """A uniform draw in [0, 1) addressed by its coordinates rather than by a sequence."""
    digest = hashlib.blake2b(f"{seed}|{pair}|{stream}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def _anchor(seed: int, spec: PairSpec, block: int) -> float:
    """Log-price offset at the start of a block: smooth value noise summed over scales."""
    block_days = _BLOCK * spec.tick_interval_ms / _DAY_MS
    level = 0.0
    for octave, period_days in enumerate(_ANCHOR_PERIODS_DAYS):
        position = block * block_days / period_days
        cell = math.floor(position)
        fraction = position - cell
        smooth = fraction * fraction * (3 - 2 * fraction)
        left = _uniform(seed, spec.pair, f"anchor{octave}", cell) * 2 - 1
        right = _uniform(seed, spec.pair, f"anchor{octave}", cell + 1) * 2 - 1
        amplitude = spec.daily_volatility * math.sqrt(period_days) * 0.5
        level += amplitude * (left + (right - left) * smooth)
    return level


@lru_cache(maxsize=4096)
def _block_path(seed: int, spec: PairSpec, block: int) -> tuple[float, ...]:
    """Log-mid of each tick of a block: a Brownian bridge between consecutive anchors."""
    start = _anchor(seed, spec, block)
    end = _anchor(seed, spec, block + 1)
    ticks_per_day = _DAY_MS / spec.tick_interval_ms
    step = spec.daily_volatility / math.sqrt(ticks_per_day)
    rng = random.Random(f"{seed}|{spec.pair}|block|{block}")  # noqa: S311 - simulation, not security
    walk = [0.0]
    for _ in range(_BLOCK):
        walk.append(walk[-1] + rng.gauss(0.0, step))
    drift = end - start - walk[-1]
    return tuple(start + walk[i] + drift * i / _BLOCK for i in range(_BLOCK))
