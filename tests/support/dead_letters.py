"""Dead letters of a gate since fixed, to replay: one per outcome a replay can have."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from quotestream.domain.quote import to_ms
from quotestream.domain.rows import dead_letter_row, dead_letter_row_id
from tests.support.builders import quote_bytes, quote_dict
from tests.support.rows import quote_at

# Pairs the fixed gate knows: BTC-USD was missing when its quotes were dead-lettered.
FIXED_PAIRS = ("USD-BRL", "BTC-USD")


@dataclass
class DeadLetters:
    """Received an hour ago: a BTC-USD quote refused as an unknown pair (now parses), a
    USD-BRL quote refused the same way but loaded since (by a backfill), malformed JSON
    (still fails), and a dead letter of another reason, outside the replay's filter."""

    received: datetime = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def __post_init__(self) -> None:
        received_ms = to_ms(self.received)
        event_ms = received_ms - 5_000
        self.new_quote = quote_dict("BTC-USD", bid="64000.00", ask="64001.00", event_ts_ms=event_ms)
        self.loaded_quote = quote_at(event_ms, pair="USD-BRL")
        btc = quote_bytes(pair="BTC-USD", bid="64000.00", ask="64001.00", event_ts_ms=event_ms)
        usd = quote_bytes(pair="USD-BRL", event_ts_ms=event_ms)
        self.rows = [
            _letter(btc, "unknown_pair", received_ms, "m-btc", {"pair": "BTC-USD"}),
            _letter(usd, "unknown_pair", received_ms, "m-usd"),
            _letter(b'{"pair": ', "malformed_json", received_ms, "m-bad"),
            _letter(b"\xff\xfe", "bad_encoding", received_ms, "m-bytes"),
        ]

    @property
    def start(self) -> datetime:
        return self.received - timedelta(minutes=1)

    @property
    def end(self) -> datetime:
        return self.received + timedelta(minutes=1)

    @property
    def ids(self) -> list[str]:
        return [dead_letter_row_id(row) for row in self.rows]


def _letter(
    payload: bytes,
    reason: str,
    received_ms: int,
    message_id: str,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    return dead_letter_row(
        payload,
        attributes,
        reason=reason,
        error="refused before the fix",
        stage="parse",
        received_ts_ms=received_ms,
        message_id=message_id,
    )
