"""What the services ask of the warehouse's rows, one port per consumer, and what the
questions answer with. Each question has a name and plain data for an answer, so a fake can
answer it too. Intervals are [start, end); times in milliseconds are since the epoch."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from quotestream.domain.ledger import Bar, LoadedQuote


@dataclass(frozen=True, slots=True)
class Progress:
    """A run so far: quote rows and dead letters written since its start, and the newest event
    time among those quotes (None before the first)."""

    loaded: int
    dead_letters: int
    newest_event_ms: int | None


@dataclass(frozen=True, slots=True)
class RecentFlow:
    """What the streaming load wrote lately: the newest event time of the recent partitions
    (None when they hold no quote), and the quote rows and dead letters of the last window."""

    newest_event_ms: int | None
    loaded: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class BarPane:
    """One pane of a bar as stored: a late pane is a row of its own, the highest index is final."""

    bar: Bar
    pane_index: int


@dataclass(frozen=True, slots=True)
class MinuteSummary:
    """One pair's minute recomputed from `quotes`, each event id once: the bar of its mids
    (open and close by event time, then event id) and the spread of its closing quote."""

    bar: Bar
    close_spread: float


@dataclass(frozen=True, slots=True)
class MidMoves:
    """A pair's tick-to-tick moves of ln(mid) in event-time order, summarised robustly: their
    median, the median absolute deviation from it (MAD), the largest deviation and the event
    time of the tick that made it, and the lowest mid (what one price quantum weighs most)."""

    pair: str
    moves: int
    median: float
    mad: float
    largest_deviation: float
    largest_at_ms: int
    lowest_mid: float


@dataclass(frozen=True, slots=True)
class PairTicks:
    """A pair's ticks in an interval, each event id once: how many, the newest event time, the
    gaps between consecutive ticks of the scheduled source longer than allowed, with the ticks
    they miss (a gap of g intervals misses round(g) - 1), the gaps bordering another source's
    ticks longer than allowed (a feed has no schedule: they miss no counted tick), and the
    longest gap of all and the event time ending it."""

    pair: str
    ticks: int
    newest_event_ms: int
    gaps: int
    missing_ticks: int
    longest_gap_ms: int
    longest_gap_end_ms: int | None
    feed_gaps: int


@dataclass(frozen=True, slots=True)
class TickGapRule:
    """A gap between two ticks of `source` (the one with a tick schedule, the API's) is longer
    than `max_intervals` of the pair's tick interval in `tick_intervals_ms` (a pair not there
    has no such gaps); a gap with another source's tick at either end, longer than
    `max_feed_gap_ms`, whatever the pair."""

    tick_intervals_ms: Mapping[str, int]
    max_intervals: float
    source: str
    max_feed_gap_ms: int


@dataclass(frozen=True, slots=True)
class ServedSpan:
    """A stretch of a pair's event time another source served: a run of stored quotes of other
    sources than the one asked about, bounded by that source's stored quotes around it (their
    times excluded; None: there is none before, or after, in the interval asked about). The
    extract reads one source at a time, so the asked source has nothing to add inside."""

    after_ms: int | None
    before_ms: int | None
    # The other sources' quotes in the run.
    quotes: int

    def holds(self, event_ms: int) -> bool:
        return (self.after_ms is None or self.after_ms < event_ms) and (
            self.before_ms is None or event_ms < self.before_ms
        )


def served_elsewhere_at(spans: Sequence[ServedSpan], event_ms: int) -> bool:
    """Whether another source served the moment: it lies in one of a pair's spans."""
    return any(span.holds(event_ms) for span in spans)


@dataclass(frozen=True, slots=True)
class KeptDeadLetter:
    """A dead letter as kept, with its row id (domain.rows.dead_letter_row_id)."""

    row_id: str
    payload: str | None
    payload_encoding: str
    attributes: dict[str, str]
    reason: str
    stage: str


@dataclass(frozen=True, slots=True)
class ReplayVerdict:
    """The newest replay's verdict on a dead letter: replayed, or still failing and why."""

    outcome: str
    reason: str | None


class BarQueries(Protocol):
    """The stored bars as the quality check compares them: the Quotes pipeline page shows them."""

    def final_bars(self, start: datetime, end: datetime) -> list[Bar]:
        """The final pane (highest pane_index) of each stored bar whose window starts in the
        interval."""

    def close(self) -> None: ...


class QualityQueries(BarQueries, Protocol):
    """What the data-quality checks ask of an interval."""

    def distinct_quotes_per_pair(self, start: datetime, end: datetime) -> dict[str, int]:
        """pair -> distinct event ids of the interval's event time; a pair without any is absent."""

    def crossed_quotes(self, start: datetime, end: datetime) -> int:
        """Quote rows of the interval's event time whose bid is above their ask."""

    def duplicate_quote_rows(self, start: datetime, end: datetime) -> int:
        """Quote rows of the interval's event time beyond the first of each event id."""

    def quotes_with_nulls(self, start: datetime, end: datetime) -> int:
        """Quote rows of the interval's event time lacking bid, ask, mid, spread or ingest_ts."""

    def quotes_ingested(self, start: datetime, end: datetime) -> int:
        """Quote rows written (ingest_ts) in the interval, whatever their event time."""

    def dead_letters_received(self, start: datetime, end: datetime) -> int:
        """Dead letters written (received_ts) in the interval."""

    def newest_event_ms(self) -> int | None:
        """The newest event time of all the quotes; None while there is none."""

    def minute_summaries(self, start: datetime, end: datetime) -> list[MinuteSummary]:
        """Every pair-minute of the interval's event time with quotes, recomputed from them."""

    def mid_moves(self, start: datetime, end: datetime) -> list[MidMoves]:
        """Per pair with at least two ticks in the interval's event time, its mid moves."""

    def pair_ticks(self, start: datetime, end: datetime, gaps: TickGapRule) -> dict[str, PairTicks]:
        """pair -> its ticks of the interval's event time, for every pair with any, with the
        gaps longer than the rule allows."""

    def served_elsewhere(
        self, start: datetime, end: datetime, source: str
    ) -> dict[str, list[ServedSpan]]:
        """pair -> the spans of the interval's event time that sources other than `source` (the
        API's) served, one per run of consecutive quotes of theirs (by event time, each event
        id once), in time order; a pair without such quotes is absent. The API's history has
        quotes there that must not be stored too: an instant is stored from one source."""


class AccountingQueries(Protocol):
    """What a run wrote from its start on, for the accounting of every published message."""

    def progress_since(self, since_ms: int) -> Progress:
        """What was written from `since_ms` on (ingest_ts, received_ts)."""

    def loaded_quotes_since(self, since_ms: int) -> list[LoadedQuote]:
        """The quote rows written from `since_ms` on."""

    def bar_panes_since(self, since_ms: int) -> list[BarPane]:
        """Every stored pane of the bars whose window ended at or after `since_ms`."""

    def dead_letter_reasons_since(self, since_ms: int) -> dict[str, str]:
        """message id -> reason of the dead letters received from `since_ms` on that have a
        message id."""

    def close(self) -> None: ...


class ReplayQueries(Protocol):
    """The dead letters a replay re-drives, and what earlier replays made of them."""

    def dead_letters_between(
        self, start: datetime, end: datetime, reasons: Collection[str]
    ) -> list[KeptDeadLetter]:
        """The dead letters received in the interval, of these reasons (all when empty)."""

    def replay_verdicts(self, dead_letter_ids: Collection[str]) -> dict[str, ReplayVerdict]:
        """dead-letter row id -> the newest replay verdict, for those of these ids replayed."""

    def close(self) -> None: ...


class HealthQueries(Protocol):
    """What the streaming health verdict reads of the load's recent writes."""

    def recent_flow(self, since_ms: int, events_since_ms: int) -> RecentFlow:
        """The newest event time from `events_since_ms` on; the quote rows of those event times
        written, and the dead letters received, from `since_ms` on. `events_since_ms` bounds
        the partitions read."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredBar:
    """What is stored of one pair's minute: its quotes, event id -> (event time, mid), each
    event id once, and the bar's final stored pane (highest pane_index, then most ticks): its
    index (-1: no pane stored) and its tick count (0: none)."""

    ticks: dict[str, tuple[int, Decimal]]
    pane_index: int = -1
    pane_tick_count: int = 0


# A bar pane's identity: its pair, its minute's start (ms) and its pane index.
BarPaneKey = tuple[str, int, int]


class StoredRowLookups(Protocol):
    """Which rows are stored already: the load's writer and pull edge ask before they write or
    settle a message, the replay before it inserts a quote, the bars before they go on with
    the minutes an earlier job may have seen."""

    def stored_quote_ids(self, event_times: Mapping[str, datetime]) -> set[str]:
        """Which of these event ids (each with its event time) `quotes` holds; the times bound
        the partitions read."""

    def stored_dead_letter_ids(self, row_ids: Collection[str]) -> set[str]:
        """Which of these dead-letter row ids (domain.rows.dead_letter_row_id, of rows with a
        message id) `quotes_dead_letter` holds."""

    def stored_bar_panes(self, panes: Collection[BarPaneKey]) -> set[BarPaneKey]:
        """Which of these (pair, window start ms, pane index) `quote_bars_1m` holds; the
        window starts bound the partitions read."""

    def stored_bars(self, pair: str, start_ms: int, end_ms: int) -> dict[int, StoredBar]:
        """Window start (ms) -> what `quotes` and `quote_bars_1m` hold of the pair's minute,
        for each minute of [start_ms, end_ms) (minute boundaries) with a stored quote or pane;
        one query, reading only those minutes' partitions."""

    def close(self) -> None: ...


class ResumePoints(Protocol):
    """Where the extract resumes: what `quotes` holds already, asked once when a job starts."""

    def newest_event_per_pair(self, since_ms: int, source: str) -> dict[str, int]:
        """pair -> its newest stored event time from `since_ms` on among the quotes of
        `source` (the extract's own: quotes another source pushed or a backfill stored say
        nothing of what it fetched); a pair without such a quote there is absent. `since_ms`
        bounds the partitions read (the extract's look-back)."""

    def close(self) -> None: ...


class BackfillWrites(Protocol):
    """The backfill's one set-based write, and the spans it leaves to the source that served
    them."""

    def served_elsewhere(
        self, start: datetime, end: datetime, source: str
    ) -> dict[str, list[ServedSpan]]:
        """As QualityQueries.served_elsewhere."""

    def insert_missing_quotes(self, scratch_table: str, start: datetime, end: datetime) -> int:
        """Insert into `quotes` the rows of `scratch_table` of the interval's event time whose
        event id `quotes` lacks there; returns how many. Only inserts, which rows still in
        BigQuery's streaming buffer allow where a MERGE or DELETE would fail."""

    def close(self) -> None: ...
