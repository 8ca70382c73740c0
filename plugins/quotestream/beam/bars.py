"""One-minute OHLC bars of mid per pair, in event time, restated by late quotes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from decimal import Decimal
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from quotestream.beam.parse import NAMESPACE
from quotestream.beam.sinks import LookupsFactory, waited
from quotestream.domain.quote import Quote, format_ts, now_ms
from quotestream.domain.validation import FUTURE_TOLERANCE_MS
from quotestream.ports.queries import StoredRowLookups

MINUTE_MS = 60_000

log = logging.getLogger(__name__)

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
_BORN = ReadModifyWriteStateSpec("born_ms", VarIntCoder())
_FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
BARS_STATE = beam.DoFn.StateParam(_BARS)
NEWEST_STATE = beam.DoFn.StateParam(_NEWEST)
BORN_STATE = beam.DoFn.StateParam(_BORN)
FLUSH_TIMER = beam.DoFn.TimerParam(_FLUSH)


class MinuteBarsFn(beam.DoFn):
    """(pair, quote) -> bar rows, from keyed state rather than windows.

    A minute is emitted (pane ON_TIME:0) as soon as the pair's first quote of a later minute
    arrives, or when the watermark passes the minute's end, whichever comes first: on
    Beam's local runner a streaming pipeline's watermark never moves, so the data has to close
    minutes by itself. A quote for an emitted minute restates the whole bar as a new pane
    (LATE:1, LATE:2, ...) while the minute is within `allowed_lateness_ms` of the newest quote
    seen; older ones are dropped from the bars (the quotes table keeps them).

    The state dies with the job, and quotes it acknowledged do not come again. With
    `lookups_factory`, the key's first quote in this job first takes up, in one query, every
    minute this job may open that an earlier job may have seen: from the oldest minute a
    quote can still restate to the moment this job took that quote, plus the gate's future
    tolerance (later minutes, so all live traffic after a job's first minute, no earlier job
    saw). Each minute with a stored quote or pane is seeded: its stored quotes are its ticks,
    and its panes go on after the stored final one. One whose stored final pane counts fewer
    ticks than its stored quotes (an earlier job acknowledged them before it stored the pane)
    is restated at once; one with no pane stored is closed as any minute is (at once if it is
    earlier than this quote's minute).
    """

    def __init__(
        self,
        allowed_lateness_ms: int,
        lookups_factory: LookupsFactory | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._lateness_ms = allowed_lateness_ms
        self._lookups_factory = lookups_factory
        self._clock = clock
        self._lookups: StoredRowLookups | None = None
        self.bars = Metrics.counter(NAMESPACE, "bars")
        self.too_late = Metrics.counter(NAMESPACE, "bars_too_late")
        self.seeded = Metrics.counter(NAMESPACE, "bars_seeded")
        self.restated_on_start = Metrics.counter(NAMESPACE, "bars_restated_on_start")

    def setup(self) -> None:
        self._lookups = self._lookups_factory() if self._lookups_factory else None

    def process(
        self,
        element: tuple[str, Quote],
        bars_state: Any = BARS_STATE,
        newest_state: Any = NEWEST_STATE,
        flush: Any = FLUSH_TIMER,
        born_state: Any = BORN_STATE,
    ) -> Iterator[dict[str, Any]]:
        pair, quote = element
        bars: MinuteBars = bars_state.read() or {}
        newest = max(newest_state.read() or 0, quote.event_ts_ms)
        minute = _minute_of(quote.event_ts_ms)
        if minute not in bars and minute + MINUTE_MS + self._lateness_ms <= newest:
            self.too_late.inc()
            return
        opens_a_bar = minute not in bars
        # The ticks of the stored final pane of this quote's minute: a seeded bar with more
        # restates it at once, even if this quote is among the stored ones (this job's writer
        # may have run ahead).
        counted = None
        if self._lookups is not None and born_state.read() is None:
            born = self._clock()
            born_state.write(born)
            counted = yield from self._go_on_from_stored(
                self._lookups, pair, bars, minute, newest, born
            )
        bar = bars.setdefault(minute, MinuteBar())
        fresh = quote.event_id not in bar.ticks
        if fresh:
            bar.ticks[quote.event_id] = (quote.event_ts_ms, quote.mid)
        if bar.pane_index >= 0 and (fresh or (counted is not None and len(bar.ticks) > counted)):
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

    def _go_on_from_stored(
        self,
        lookups: StoredRowLookups,
        pair: str,
        bars: MinuteBars,
        minute: int,
        newest: int,
        born: int,
    ) -> Generator[dict[str, Any], None, int | None]:
        """Seeds into `bars` every minute this job may open that is stored, restates at once
        those (but `minute`, the quote's own) whose final stored pane lacks stored ticks, and
        returns the tick count of `minute`'s final stored pane (None: nothing stored)."""
        start = _minute_of(newest - self._lateness_ms)
        end = _minute_of(born + FUTURE_TOLERANCE_MS - 1) + MINUTE_MS
        stored = waited(
            partial(lookups.stored_bars, pair, start, end), f"the stored bars of {pair}"
        )
        restated = []
        for start_ms, stored_bar in stored.items():
            bar = bars[start_ms] = MinuteBar()
            bar.ticks.update(stored_bar.ticks)
            bar.pane_index = stored_bar.pane_index
            short = len(stored_bar.ticks) > stored_bar.pane_tick_count
            if start_ms != minute and bar.pane_index >= 0 and short:
                restated.append(start_ms)
                yield self._emit(pair, start_ms, bar)
        self.seeded.inc(len(stored))
        if restated:
            self.restated_on_start.inc(len(restated))
            log.info(
                "%s: restating %d minutes an earlier job left short of their stored quotes: %s",
                pair,
                len(restated),
                ", ".join(format_ts(m) for m in restated),
            )
        return stored[minute].pane_tick_count if minute in stored else None

    def teardown(self) -> None:
        if self._lookups is not None:
            self._lookups.close()

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


def _minute_of(ms: int) -> int:
    return ms - ms % MINUTE_MS


def bar_row_id(row: Mapping[str, Any]) -> str:
    # Each pane is its own row: a late pane re-states the whole bar; readers take the row with
    # the highest pane_index.
    return f"{row['pair']}|{row['window_start']}|{row['pane_index']}"


class OneMinuteBars(beam.PTransform[Any, Any]):
    """Quote -> bar rows: each (pair, minute) once when it closes, then restated once per late
    quote up to `allowed_lateness_s`, each pane holding every tick seen so far. With
    `lookups_factory`, a job goes on with the bars an earlier job stored (MinuteBarsFn)."""

    def __init__(
        self,
        allowed_lateness_s: int = 300,
        lookups_factory: LookupsFactory | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__()
        self._bars = MinuteBarsFn(allowed_lateness_s * 1000, lookups_factory, clock)

    def expand(self, quotes: PCollection[Any]) -> PCollection[Any]:
        return (
            quotes
            | "ByPair" >> beam.Map(lambda q: (q.pair, q))
            | "MinuteBars" >> beam.ParDo(self._bars)
        )
