"""The read model of the operator's page: what it shows, asked of the warehouse by name.

Apart from the services' query ports (ports/queries.py) on purpose: these questions only ever
feed a view (cosmicpython's read side), so they can change with the page without touching what
the services decide on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MinuteCount:
    minute_ms: int
    rows: int


@dataclass(frozen=True, slots=True)
class Lag:
    """Event time -> row written, in seconds, over the quotes written in a window."""

    p50_s: float | None
    p95_s: float | None
    rows: int


@dataclass(frozen=True, slots=True)
class PairLatest:
    """A pair's newest quote and the source serving it: the extract fails over between
    sources, and each quote's `source` says which one produced it."""

    newest_ms: int
    source: str
    # The first quote of the newest source's current run (no earlier than what was read).
    source_since_ms: int
    # Quotes from `switches_since_ms` on whose source differs from their predecessor's.
    switches: int


@dataclass(frozen=True, slots=True)
class DeadLetterGroup:
    reason: str
    stage: str
    count: int
    newest_ms: int
    sample_payload: str


@dataclass(frozen=True, slots=True)
class QualityResult:
    """The newest result of one check of one interval (and pair)."""

    check_name: str
    pair: str | None
    interval_start_ms: int
    interval_end_ms: int
    passed: bool
    details: str
    run_id: str
    checked_ms: int


class PipelineViews(Protocol):
    """Times in milliseconds since the epoch; `since_ms` bounds what is read."""

    def rows_per_minute(self, since_ms: int) -> list[MinuteCount]:
        """Quote rows written (ingest_ts) per minute from `since_ms` on, oldest first; a minute
        without any is absent."""

    def lag(self, since_ms: int) -> Lag:
        """p50 and p95 of ingest_ts - event_ts of the quote rows written from `since_ms` on."""

    def latest_per_pair(self, since_ms: int, switches_since_ms: int) -> dict[str, PairLatest]:
        """pair -> its newest quote from `since_ms` on, that quote's source, the first quote of
        that source's current run, and the switches of source from `switches_since_ms` on (the
        quotes ordered by event time, then source); a pair without a quote is absent."""

    def dead_letters_by_reason(self, since_ms: int) -> list[DeadLetterGroup]:
        """The dead letters received from `since_ms` on, per reason and stage, the largest
        group first, each with its newest payload (cut to 500 characters)."""

    def quality_results(self, since_ms: int) -> list[QualityResult]:
        """The newest result of each check, pair and interval that starts from `since_ms` on."""

    def close(self) -> None: ...
