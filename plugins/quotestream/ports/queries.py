"""What the warehouse's named queries answer with, beside the QuoteQueries port that uses it."""

from __future__ import annotations

from dataclasses import dataclass

from quotestream.domain.ledger import Bar


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
    """A pair's ticks in an interval, each event id once: how many, the newest event time, and
    the gaps between consecutive ticks longer than allowed, with the ticks they miss (a gap
    of g intervals misses round(g) - 1) and the longest gap and the event time ending it."""

    pair: str
    ticks: int
    newest_event_ms: int
    gaps: int
    missing_ticks: int
    longest_gap_ms: int
    longest_gap_end_ms: int | None


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
