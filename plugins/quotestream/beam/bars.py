"""One-minute OHLC bars of mid per pair, in event time, restated by late quotes."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import Quote, format_ts

MINUTE_MS = 60_000

# event_id -> (event_ts_ms, mid): keyed by id so a redelivered quote counts once.
Ticks = dict[str, tuple[int, Decimal]]


def ohlc(ticks: Ticks) -> dict[str, Any]:
    """Open and close by event time (the order of arrival does not matter)."""
    ordered = sorted((ts, event_id, mid) for event_id, (ts, mid) in ticks.items())
    mids = [mid for _, _, mid in ordered]
    return {
        "open": str(mids[0]),
        "high": str(max(mids)),
        "low": str(min(mids)),
        "close": str(mids[-1]),
        "tick_count": len(mids),
    }


MinuteBars = dict[int, "MinuteBar"]


class MinuteBar:
    """One pair's minute so far: its ticks, and the index of the last pane emitted (-1: none)."""

    __slots__ = ("pane_index", "ticks")

    def __init__(self) -> None:
        self.ticks: Ticks = {}
        self.pane_index = -1


_BARS = ReadModifyWriteStateSpec("bars", PickleCoder())
_NEWEST = ReadModifyWriteStateSpec("newest_event_ms", VarIntCoder())
_FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
BARS_STATE = beam.DoFn.StateParam(_BARS)
NEWEST_STATE = beam.DoFn.StateParam(_NEWEST)
FLUSH_TIMER = beam.DoFn.TimerParam(_FLUSH)


class MinuteBarsFn(beam.DoFn):
    """(pair, quote) -> bar rows, from keyed state rather than windows.

    A minute is emitted (pane ON_TIME:0) as soon as the pair's first quote of a later minute
    arrives, or when the watermark passes the minute's end, whichever comes first: on
    Beam's local runner a streaming pipeline's watermark never moves, so the data has to close
    minutes by itself. A quote for an emitted minute restates the whole bar as a new pane
    (LATE:1, LATE:2, ...) while the minute is within `allowed_lateness_ms` of the newest quote
    seen; older ones are dropped from the bars (the quotes table keeps them).
    """

    def __init__(self, allowed_lateness_ms: int) -> None:
        self._lateness_ms = allowed_lateness_ms
        self.bars = Metrics.counter(NAMESPACE, "bars")
        self.too_late = Metrics.counter(NAMESPACE, "bars_too_late")

    def process(
        self,
        element: tuple[str, Quote],
        bars_state: Any = BARS_STATE,
        newest_state: Any = NEWEST_STATE,
        flush: Any = FLUSH_TIMER,
    ) -> Iterator[dict[str, Any]]:
        pair, quote = element
        bars: MinuteBars = bars_state.read() or {}
        newest = max(newest_state.read() or 0, quote.event_ts_ms)
        minute = quote.event_ts_ms - quote.event_ts_ms % MINUTE_MS
        if minute not in bars and minute + MINUTE_MS + self._lateness_ms <= newest:
            self.too_late.inc()
            return
        opens_a_bar = minute not in bars
        bar = bars.setdefault(minute, MinuteBar())
        if quote.event_id not in bar.ticks:
            bar.ticks[quote.event_id] = (quote.event_ts_ms, quote.mid)
            if bar.pane_index >= 0:
                yield self._emit(pair, minute, bar)
        for earlier in sorted(m for m in bars if m < minute and bars[m].pane_index < 0):
            yield self._emit(pair, earlier, bars[earlier])
        for expired in [m for m in bars if m + MINUTE_MS + self._lateness_ms <= newest]:
            del bars[expired]
        bars_state.write(bars)
        newest_state.write(newest)
        # The flush is due when the latest minute ends. Set when a bar opens, so every bar not
        # emitted yet has a flush pending (even the first quote of an earlier minute after the
        # latest one's flush fired), not for every quote: a timer costs as much as the rest.
        if opens_a_bar:
            flush.set(Timestamp.of((max(bars) + MINUTE_MS) / 1000))

    @on_timer(_FLUSH)
    def on_flush(
        self,
        key: Any = beam.DoFn.KeyParam,
        fired_at: Any = beam.DoFn.TimestampParam,
        bars_state: Any = BARS_STATE,
        flush: Any = FLUSH_TIMER,
    ) -> Iterator[dict[str, Any]]:
        bars: MinuteBars = bars_state.read() or {}
        end_ms = fired_at.micros // 1000
        for minute in sorted(m for m in bars if m + MINUTE_MS <= end_ms):
            if bars[minute].pane_index < 0:
                yield self._emit(key, minute, bars[minute])
        bars_state.write(bars)
        # A firing set before a newer minute opened consumed the timer: set it again.
        if bars and max(bars) + MINUTE_MS > end_ms:
            flush.set(Timestamp.of((max(bars) + MINUTE_MS) / 1000))

    def _emit(self, pair: str, minute: int, bar: MinuteBar) -> dict[str, Any]:
        bar.pane_index += 1
        self.bars.inc()
        timing = "ON_TIME" if bar.pane_index == 0 else "LATE"
        return {
            "pair": pair,
            "window_start": format_ts(minute),
            "window_end": format_ts(minute + MINUTE_MS),
            **ohlc(bar.ticks),
            "pane": f"{timing}:{bar.pane_index}",
            "pane_index": bar.pane_index,
        }


def bar_row_id(row: dict[str, Any]) -> str:
    # Each pane is its own row: a late pane re-states the whole bar; readers take the row with
    # the highest pane_index.
    return f"{row['pair']}|{row['window_start']}|{row['pane_index']}"


class OneMinuteBars(beam.PTransform[Any, Any]):
    """Quote -> bar rows: each (pair, minute) once when it closes, then restated once per late
    quote up to `allowed_lateness_s`, each pane holding every tick seen so far."""

    def __init__(self, allowed_lateness_s: int = 300) -> None:
        super().__init__()
        self._allowed_lateness_ms = allowed_lateness_s * 1000

    def expand(self, quotes: PCollection[Any]) -> PCollection[Any]:
        return (
            quotes
            | "ByPair" >> beam.Map(lambda q: (q.pair, q))
            | "MinuteBars" >> beam.ParDo(MinuteBarsFn(self._allowed_lateness_ms))
        )
