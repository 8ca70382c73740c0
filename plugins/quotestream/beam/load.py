"""The load pipeline: messages -> gate -> `quotes`, `quote_bars_1m`, `quotes_dead_letter`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import PBegin, PCollection

from quotestream.beam.bars import OneMinuteBars, bar_row_id
from quotestream.beam.messages import RawMessage
from quotestream.beam.parse import DEAD_LETTER, QUOTES, ParseQuotes
from quotestream.beam.sinks import (
    DEFAULT_SHARDS,
    REJECTED,
    WRITTEN,
    LookupsFactory,
    TableRows,
    TableWriterFactory,
    WriteRows,
)
from quotestream.domain.quote import Quote, now_ms, to_ms
from quotestream.domain.rows import dead_letter_row_id, quote_row
from quotestream.domain.schemas import QUOTE_BARS_1M, QUOTES_DEAD_LETTER
from quotestream.domain.schemas import QUOTES as QUOTES_TABLE
from quotestream.domain.validation import FUTURE_TOLERANCE_MS
from quotestream.ports import QuoteSource
from quotestream.ports.queries import StoredRowLookups

log = logging.getLogger(__name__)

STORED = "stored"


class LoadQuotes(beam.PTransform[Any, Any]):
    """RawMessage -> rows in the three tables. Returns the quote rows and bar rows it writes,
    and under STORED, by path, the quote rows and dead-letter rows now stored: what settles
    the messages they came from (bars do not hold a message back).

    No Flatten joins the paths: on the streaming DirectRunner a Flatten's output waits until
    the source ends, which an endless local source never does.

    `max_quote_age_ms` is the live load's freshness horizon (settings.max_quote_age_s): older
    quotes become dead letters `too_old`. The batch path over the API's history takes none.
    """

    def __init__(
        self,
        writer_factory: TableWriterFactory,
        lookups_factory: LookupsFactory,
        allowed_lateness_s: int = 300,
        pairs: Sequence[str] | None = None,
        max_quote_age_ms: int | None = None,
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        super().__init__()
        self._writers = _Writers(writer_factory, lookups_factory, shards)
        # A minute an earlier job may have begun is taken up from what it stored. Not for the
        # backfill (history, no freshness horizon): a lookup for every minute of it, and a
        # backfill job has no predecessor's open minutes to take up.
        self._bars_lookups = lookups_factory if max_quote_age_ms is not None else None
        self._allowed_lateness_s = allowed_lateness_s
        self._pairs = pairs
        self._max_quote_age_ms = max_quote_age_ms

    def expand(self, messages: PCollection[Any]) -> dict[str, Any]:
        parsed = messages | "ParseQuotes" >> ParseQuotes(self._pairs, self._max_quote_age_ms)
        quote_rows = parsed[QUOTES] | "QuoteRows" >> beam.Map(_quote_row)
        quotes = quote_rows | "WriteQuotes" >> self._writers.of(QUOTE_ROWS)
        bar_rows = parsed[QUOTES] | "OneMinuteBars" >> OneMinuteBars(
            self._allowed_lateness_s, lookups_factory=self._bars_lookups
        )
        bars = bar_rows | "WriteBars" >> self._writers.of(BAR_ROWS)
        _ = bars[REJECTED] | "DeadLetterRejectedBars" >> WriteDeadLetters(self._writers)
        stored = {
            "Quotes": quotes[WRITTEN],
            "DeadLetters": parsed[DEAD_LETTER] | "DeadLetter" >> WriteDeadLetters(self._writers),
            "RejectedQuotes": quotes[REJECTED]
            | "DeadLetterRejectedQuotes" >> WriteDeadLetters(self._writers),
        }
        return {
            QUOTES_TABLE.name: quote_rows,
            QUOTE_BARS_1M.name: bar_rows,
            STORED: stored,
        }


class WriteDeadLetters(beam.PTransform[Any, Any]):
    """Dead-letter rows -> those written. One BigQuery refuses is logged and left
    unacknowledged: Pub/Sub delivers its message again, then dead-letters it to its topic."""

    def __init__(self, writers: _Writers) -> None:
        super().__init__()
        self._writers = writers

    def expand(self, rows: PCollection[Any]) -> PCollection[Any]:
        written = rows | "Write" >> self._writers.of(DEAD_LETTER_ROWS)
        _ = written[REJECTED] | "LogUnwritable" >> beam.Map(_log_unwritable)
        return written[WRITTEN]


def _quote_row(quote: Quote) -> Any:
    # Typed Any: Beam would infer the row's dict type here and pick a coder for dicts.
    return quote_row(quote, now_ms())


def _event_id(row: Mapping[str, Any]) -> str:
    return str(row["event_id"])


def _stored_quotes(lookups: StoredRowLookups, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    return lookups.stored_quote_ids({_event_id(row): _moment(row["event_ts"]) for row in rows})


def _stored_dead_letters(lookups: StoredRowLookups, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    return lookups.stored_dead_letter_ids([dead_letter_row_id(row) for row in rows])


def _stored_bars(lookups: StoredRowLookups, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    panes = {
        (row["pair"], to_ms(_moment(row["window_start"])), int(row["pane_index"])): bar_row_id(row)
        for row in rows
    }
    return {panes[pane] for pane in lookups.stored_bar_panes(list(panes))}


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _quote_written_from(row: Mapping[str, Any]) -> int:
    return to_ms(_moment(row["event_ts"])) - FUTURE_TOLERANCE_MS


QUOTE_ROWS = TableRows(QUOTES_TABLE.name, _event_id, _stored_quotes, _quote_written_from)
BAR_ROWS = TableRows(QUOTE_BARS_1M.name, bar_row_id, _stored_bars)
DEAD_LETTER_ROWS = TableRows(QUOTES_DEAD_LETTER.name, dead_letter_row_id, _stored_dead_letters)


@dataclass(frozen=True)
class _Writers:
    """The one writer and lookups every table's WriteRows of a load uses."""

    writer_factory: TableWriterFactory
    lookups_factory: LookupsFactory
    shards: int

    def of(self, rows: TableRows) -> WriteRows:
        return WriteRows(rows, self.writer_factory, self.lookups_factory, self.shards)


def _log_unwritable(row: dict[str, Any]) -> None:
    # Only a bug in our own dead-letter rows gets here; say so as loudly as we can.
    log.error(
        "dead-letter row rejected by BigQuery, message not stored: %s", json.dumps(row)[:2000]
    )


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
