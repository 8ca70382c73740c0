"""The Quote value object and its one wire representation."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal


def make_event_id(pair: str, event_ts_ms: int, source: str) -> str:
    """A stable id: the same tick from the same source always gets the same id, so every
    stage downstream can deduplicate on it (BigQuery insertId, backfill anti-joins)."""
    key = f"{pair}|{event_ts_ms}|{source}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def now_ms() -> int:
    """The current time in milliseconds since the epoch, the unit of every event time here."""
    return time.time_ns() // 1_000_000


def format_ts(event_ts_ms: int) -> str:
    """RFC 3339, UTC, millisecond precision, `Z` suffix: the only timestamp form on the wire."""
    seconds, millis = divmod(event_ts_ms, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # A load formats the same few seconds thousands of times over (event and ingest times).
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (sub-millisecond part truncated)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: quotestream times are always timezone-aware UTC")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, slots=True)
class Quote:
    event_id: str
    pair: str
    base: str
    quote_currency: str
    bid: Decimal
    ask: Decimal
    mid: Decimal
    spread: Decimal
    event_ts_ms: int
    source: str

    @property
    def event_ts(self) -> datetime:
        return datetime.fromtimestamp(self.event_ts_ms / 1000, tz=UTC)

    def to_dict(self) -> dict[str, str]:
        """The wire form. Prices are decimal strings: a JSON number would pass through binary
        floats in most clients, and BigQuery NUMERIC must receive the exact digits."""
        return {
            "event_id": self.event_id,
            "pair": self.pair,
            "base": self.base,
            "quote_currency": self.quote_currency,
            "bid": str(self.bid),
            "ask": str(self.ask),
            "mid": str(self.mid),
            "spread": str(self.spread),
            "event_ts": format_ts(self.event_ts_ms),
            "source": self.source,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def pubsub_attributes(self) -> dict[str, str]:
        """Attributes published with the message, so consumers can route without parsing."""
        return {
            "pair": self.pair,
            "event_ts": format_ts(self.event_ts_ms),
            "event_id": self.event_id,
        }
