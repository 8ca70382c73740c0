"""How a source says it cannot serve, and what a pushed source (a stream) adds to the
QuoteSource port: the lines it received that no quote could be made of. They go on as
received, for the load's gate to dead-letter, so one dead-letter path keeps them all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from quotestream.ports import QuoteSource


class SourceUnavailable(ConnectionError):
    """A source could not serve a window now (after its own retries): the caller may ask
    again, or ask another source."""


@dataclass(frozen=True, slots=True)
class UnreadableLine:
    """A line of a feed as received (`payload`), with the adapter's reason for not making a
    quote of it; published with the reason as attributes, so the dead letter keeps both the
    gate's verdict and the adapter's."""

    payload: bytes
    source: str
    reason: str
    detail: str

    def attributes(self) -> dict[str, str]:
        return {"source": self.source, "source_reason": self.reason, "source_detail": self.detail}


@runtime_checkable
class QuoteStream(QuoteSource, Protocol):
    """A QuoteSource fed by a stream: `history(pair, start, end)` serves what arrived in
    [start, end) by the moment of receipt (a stream keeps no past beyond what it buffered
    since it connected), and the unreadable lines are handed over alike. Both forget only what
    arrived before `start`: a retried fetch of the same window gets the same again."""

    def unreadable(self, start_ms: int, end_ms: int) -> list[UnreadableLine]:
        """The unreadable lines received in [start_ms, end_ms); those received before
        `start_ms` are forgotten."""
