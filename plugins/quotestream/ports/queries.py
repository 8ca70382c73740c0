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
