"""The load pipeline: messages -> gate -> `quotes`, `quote_bars_1m`, `quotes_dead_letter`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import PBegin, PCollection
from apache_beam.transforms import window

from quotestream.beam.bars import OneMinuteBars, bar_row_id
from quotestream.beam.messages import RawMessage
from quotestream.beam.parse import DEAD_LETTER, QUOTES, ParseQuotes
from quotestream.beam.sinks import WarehouseFactory, WriteRows
from quotestream.domain.quote import now_ms
from quotestream.domain.rows import dead_letter_row_id, quote_row
from quotestream.domain.schemas import QUOTE_BARS_1M, QUOTES_DEAD_LETTER
from quotestream.domain.schemas import QUOTES as QUOTES_TABLE
from quotestream.ports import QuoteSource

log = logging.getLogger(__name__)


class LoadQuotes(beam.PTransform[Any, Any]):
    """RawMessage -> rows in the three tables. Returns the PCollections it writes, by table."""

    def __init__(
        self,
        warehouse_factory: WarehouseFactory,
        allowed_lateness_s: int = 300,
        pairs: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self._factory = warehouse_factory
        self._allowed_lateness_s = allowed_lateness_s
        self._pairs = pairs

    def expand(self, messages: PCollection[Any]) -> dict[str, PCollection[Any]]:
        parsed = messages | "ParseQuotes" >> ParseQuotes(self._pairs)
        quote_rows = parsed[QUOTES] | "QuoteRows" >> beam.Map(lambda q: quote_row(q, now_ms()))
        rejected_quotes = quote_rows | "WriteQuotes" >> WriteRows(
            QUOTES_TABLE.name, self._factory, _event_id
        )
        bar_rows = parsed[QUOTES] | "OneMinuteBars" >> OneMinuteBars(self._allowed_lateness_s)
        rejected_bars = (
            bar_rows
            | "WriteBars" >> WriteRows(QUOTE_BARS_1M.name, self._factory, bar_row_id)
            | "BackToGlobalWindow" >> beam.WindowInto(window.GlobalWindows())
        )
        dead_letters = (
            parsed[DEAD_LETTER],
            rejected_quotes,
            rejected_bars,
        ) | "AllDeadLetters" >> beam.Flatten()
        unwritable = dead_letters | "WriteDeadLetters" >> WriteRows(
            QUOTES_DEAD_LETTER.name, self._factory, dead_letter_row_id
        )
        _ = unwritable | "LogUnwritable" >> beam.Map(_log_unwritable)
        return {
            QUOTES_TABLE.name: quote_rows,
            QUOTE_BARS_1M.name: bar_rows,
            QUOTES_DEAD_LETTER.name: dead_letters,
        }


def _event_id(row: dict[str, Any]) -> str:
    return str(row["event_id"])


def _log_unwritable(row: dict[str, Any]) -> None:
    # Only a bug in our own dead-letter rows gets here; say so as loudly as we can.
    log.error("dead-letter row rejected by BigQuery, message lost: %s", json.dumps(row)[:2000])


class FetchHistoryFn(beam.DoFn):
    """pair -> RawMessage for every quote the API's history has in [start, end)."""

    def __init__(
        self, source_factory: Callable[[], QuoteSource], start_ms: int, end_ms: int
    ) -> None:
        self._factory = source_factory
        self._start_ms = start_ms
        self._end_ms = end_ms

    def setup(self) -> None:
        self._source = self._factory()

    def process(self, pair: str) -> Iterator[RawMessage]:
        for quote in self._source.history(pair, self._start_ms, self._end_ms):
            yield RawMessage(json.dumps(quote, separators=(",", ":")).encode(), {}, None)

    def teardown(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None:
            source.close()


class ReadHistory(beam.PTransform[Any, Any]):
    """The batch source of the same load: the API's history of [start, end) for each pair."""

    def __init__(
        self,
        pairs: Sequence[str],
        source_factory: Callable[[], QuoteSource],
        start_ms: int,
        end_ms: int,
    ) -> None:
        super().__init__()
        self._pairs = list(pairs)
        self._fetch = FetchHistoryFn(source_factory, start_ms, end_ms)

    def expand(self, begin: PBegin) -> PCollection[Any]:
        return (
            begin
            | "Pairs" >> beam.Create(self._pairs)
            | "SpreadPairs" >> beam.Reshuffle()
            | "FetchHistory" >> beam.ParDo(self._fetch)
        )
