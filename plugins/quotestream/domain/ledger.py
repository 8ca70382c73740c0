"""What a run's ledger records: each message published, each quote loaded, each bar."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    message_id: str
    # Set when the payload is a valid quote; None for what the gate refuses.
    event_id: str | None
    event_ts_ms: int | None
    publish_ms: int


@dataclass(frozen=True, slots=True)
class LoadedQuote:
    event_id: str
    pair: str
    event_ms: int
    ingest_ms: int


@dataclass(frozen=True, slots=True)
class Bar:
    pair: str
    window_start_ms: int
    open: float
    high: float
    low: float
    close: float
    tick_count: int
