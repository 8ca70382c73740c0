"""The simulated market as the tables hold it, and ways to break it: one per market check.

The API of the tests serves the same market (tests.conftest.SEED), so the reconciliation
with its history passes for what was not changed or dropped here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator, quote_from_units
from quotestream.domain.quote import format_ts, to_ms
from quotestream.domain.rows import quote_row
from tests.conftest import SEED
from tests.support.rows import MINUTE_MS

TRIANGLE = ("EUR-BRL", "EUR-USD", "USD-BRL")
MARKET = MarketSimulator(SEED, PAIR_CATALOG)

Row = dict[str, Any]
# A fixed hour: the simulated market is a function of time, so every run checks the same
# quotes (its largest price move among them is known, not drawn anew each run).
ANCHOR = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class MarketData:
    """Quote rows and bar rows of [start, end), each quote written a second after its tick."""

    start: datetime
    end: datetime
    pairs: tuple[str, ...] = TRIANGLE
    quotes: list[Row] = field(default_factory=list)
    bars: list[Row] = field(default_factory=list)

    @classmethod
    def simulated(
        cls, minutes: int, pairs: tuple[str, ...] = TRIANGLE, ago: timedelta = timedelta(hours=2)
    ) -> MarketData:
        """`minutes` whole minutes ending `ago` before ANCHOR; bars left for `with_bars`."""
        end = ANCHOR - ago
        start = end - timedelta(minutes=minutes)
        rows = [
            quote_row(quote, quote.event_ts_ms + 1_000)
            for pair in pairs
            for _, quote in MARKET.quotes_between(PAIR_CATALOG[pair], to_ms(start), to_ms(end))
        ]
        return cls(start, end, pairs, rows)

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    def of(self, pair: str) -> list[Row]:
        return [row for row in self.quotes if row["pair"] == pair]

    def with_bars(self) -> MarketData:
        """The bars the streaming load writes for these quotes: pane 0 of every minute, but
        the first minute restated by a late tick: its pane 0 has its first tick only, pane 1
        all of them."""
        ticks: defaultdict[tuple[str, int], list[Row]] = defaultdict(list)
        for row in sorted(self.quotes, key=lambda row: (row["event_ts"], row["event_id"])):
            ticks[row["pair"], _ms(row["event_ts"]) // MINUTE_MS * MINUTE_MS].append(row)
        self.bars = []
        for (pair, minute_ms), rows in ticks.items():
            if minute_ms == self.start_ms:
                self.bars += [
                    bar_row(pair, minute_ms, rows[:1], 0),
                    bar_row(pair, minute_ms, rows, 1),
                ]
            else:
                self.bars.append(bar_row(pair, minute_ms, rows, 0))
        return self


def bar_row(pair: str, minute_ms: int, rows: list[Row], pane_index: int) -> Row:
    mids = [row["mid"] for row in rows]
    return {
        "pair": pair,
        "window_start": format_ts(minute_ms),
        "window_end": format_ts(minute_ms + MINUTE_MS),
        "open": mids[0],
        "high": str(max(map(Decimal, mids))),
        "low": str(min(map(Decimal, mids))),
        "close": mids[-1],
        "tick_count": len(mids),
        "pane": f"{'ON_TIME' if pane_index == 0 else 'LATE'}:{pane_index}",
        "pane_index": pane_index,
    }


def scaled(row: Row, factor: Decimal) -> Row:
    """The same tick with its bid and ask multiplied by `factor`: still a valid quote."""
    spec = PAIR_CATALOG[row["pair"]]
    units = Decimal(10) ** spec.scale

    def scale(price: str) -> int:
        return int((Decimal(price) * factor * units).to_integral_value(ROUND_HALF_EVEN))

    quote = quote_from_units(
        spec, scale(row["bid"]), scale(row["ask"]), _ms(row["event_ts"]), row["source"]
    )
    return {**quote_row(quote, 0), "ingest_ts": row["ingest_ts"]}


def _ms(timestamp: str) -> int:
    return to_ms(datetime.fromisoformat(timestamp))


Breakage = Callable[[MarketData], None]


def cross_two_percent_rich(data: MarketData) -> None:
    data.quotes = [
        scaled(row, Decimal("1.02")) if row["pair"] == "EUR-BRL" else row for row in data.quotes
    ]


def one_tick_jumps(data: MarketData) -> None:
    usd_brl = data.of("USD-BRL")
    jumped = usd_brl[len(usd_brl) // 2 + 17]  # inside a minute, never its close
    data.quotes = [scaled(row, Decimal("1.02")) if row is jumped else row for row in data.quotes]


def quotes_stop_half_a_minute_early(data: MarketData) -> None:
    last_ms = to_ms(data.end) - 30_000
    data.quotes = [
        row for row in data.quotes if row["pair"] != "USD-BRL" or _ms(row["event_ts"]) < last_ms
    ]


def three_ticks_lost(data: MarketData) -> None:
    lost = {row["event_id"] for row in data.of("USD-BRL")[200:203]}
    data.quotes = [row for row in data.quotes if row["event_id"] not in lost]


def a_bar_restated_wrongly(data: MarketData) -> None:
    data.with_bars()
    minute = format_ts(data.start_ms + 2 * MINUTE_MS)
    bar = next(b for b in data.bars if (b["pair"], b["window_start"]) == ("USD-BRL", minute))
    quantum = Decimal(1).scaleb(-PAIR_CATALOG["USD-BRL"].mid_scale)
    wrong_close = str(Decimal(bar["close"]) + quantum)
    data.bars.append({**bar, "close": wrong_close, "pane": "LATE:1", "pane_index": 1})


@dataclass(frozen=True)
class Broken:
    """A way to break the market, the pairs checked, and the (check, pair) results that fail:
    the one aimed at, and what else must see it (ticks dropped miss from the API's history)."""

    breakage: Breakage
    pairs: tuple[str, ...]
    failing: frozenset[tuple[str, str]]

    @property
    def aimed_at(self) -> tuple[str, str]:
        return next(failure for failure in self.failing if failure[0] != "reconciliation")


BROKEN = [
    Broken(cross_two_percent_rich, TRIANGLE, frozenset({("cross_rate", "EUR-BRL")})),
    Broken(one_tick_jumps, TRIANGLE, frozenset({("price_jump", "USD-BRL")})),
    Broken(
        quotes_stop_half_a_minute_early,
        # No triangle: the cross's closes would lack their USD-BRL leg's last half minute.
        ("EUR-USD", "USD-BRL"),
        frozenset({("stale_pair", "USD-BRL"), ("reconciliation", "USD-BRL")}),
    ),
    Broken(
        three_ticks_lost,
        TRIANGLE,
        frozenset({("tick_gaps", "USD-BRL"), ("reconciliation", "USD-BRL")}),
    ),
    Broken(a_bar_restated_wrongly, TRIANGLE, frozenset({("bars", "USD-BRL")})),
]
