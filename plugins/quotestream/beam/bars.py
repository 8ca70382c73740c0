"""One-minute OHLC bars of mid per pair, in event time, updated by late quotes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import Quote, format_ts

BAR_SECONDS = 60

# event_id -> (event_ts_ms, mid): keyed by id so a redelivered quote counts once.
Ticks = dict[str, tuple[int, Decimal]]


class OhlcFn(beam.CombineFn):
    def create_accumulator(self) -> Ticks:
        return {}

    def add_input(self, ticks: Ticks, quote: Quote) -> Ticks:
        ticks[quote.event_id] = (quote.event_ts_ms, quote.mid)
        return ticks

    def merge_accumulators(self, accumulators: Iterable[Ticks]) -> Ticks:
        merged: Ticks = {}
        for ticks in accumulators:
            merged.update(ticks)
        return merged

    def extract_output(self, ticks: Ticks) -> dict[str, Any]:
        ordered = sorted((ts, event_id, mid) for event_id, (ts, mid) in ticks.items())
        mids = [mid for _, _, mid in ordered]
        return {
            "open": str(mids[0]),
            "high": str(max(mids)),
            "low": str(min(mids)),
            "close": str(mids[-1]),
            "tick_count": len(mids),
        }


class BarRowFn(beam.DoFn):
    def __init__(self) -> None:
        self.bars = Metrics.counter(NAMESPACE, "bars")

    def process(
        self,
        element: tuple[str, dict[str, Any]],
        bar_window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[dict[str, Any]]:
        pair, ohlc = element
        self.bars.inc()
        yield {
            "pair": pair,
            "window_start": format_ts(bar_window.start.micros // 1000),
            "window_end": format_ts(bar_window.end.micros // 1000),
            **ohlc,
            "pane": f"{_timing(pane.timing)}:{pane.index}",
            "pane_index": pane.index,
        }


def _timing(timing: int) -> str:
    return {0: "EARLY", 1: "ON_TIME", 2: "LATE"}.get(timing, "UNKNOWN")


def bar_row_id(row: dict[str, Any]) -> str:
    # Each pane is its own row: a late pane re-states the whole bar; readers take the row with
    # the highest pane_index.
    return f"{row['pair']}|{row['window_start']}|{row['pane_index']}"


class OneMinuteBars(beam.PTransform[Any, Any]):
    """Quote -> bar rows. Fires when the watermark passes the minute, then once per late
    quote up to `allowed_lateness_s`, each pane accumulating everything seen so far."""

    def __init__(self, allowed_lateness_s: int = 300) -> None:
        super().__init__()
        self._allowed_lateness_s = allowed_lateness_s

    def expand(self, quotes: PCollection[Any]) -> PCollection[Any]:
        return (
            quotes
            | "AtEventTime" >> beam.Map(lambda q: window.TimestampedValue(q, q.event_ts_ms / 1000))
            | "MinuteWindows"
            >> beam.WindowInto(
                window.FixedWindows(BAR_SECONDS),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=Duration(seconds=self._allowed_lateness_s),
            )
            | "ByPair" >> beam.Map(lambda q: (q.pair, q))
            | "Ohlc" >> beam.CombinePerKey(OhlcFn())
            | "BarRows" >> beam.ParDo(BarRowFn())
        )
