"""Rows of the BigQuery tables, built from domain objects: pure functions, no client."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from quotestream.domain.quote import Quote, format_ts

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


def quote_row(quote: Quote, ingest_ts_ms: int) -> dict[str, Any]:
    return {**quote.to_dict(), "ingest_ts": format_ts(ingest_ts_ms)}


def dead_letter_row(
    payload: bytes,
    attributes: Mapping[str, str] | None,
    *,
    reason: str,
    error: str,
    stage: str,
    received_ts_ms: int,
    message_id: str | None = None,
) -> dict[str, Any]:
    """Keep the original bytes replayable: UTF-8 text as is, anything else base64. A payload
    over DEAD_LETTER_PAYLOAD_BYTES keeps its head only (a BigQuery row has a size limit,
    Pub/Sub messages can be far larger); `error` then names its size and SHA-256."""
    kept = payload[:DEAD_LETTER_PAYLOAD_BYTES]
    if len(kept) < len(payload):
        digest = hashlib.sha256(payload).hexdigest()
        error = (
            f"{error} [payload truncated to {len(kept)} of {len(payload)} bytes; sha256 {digest}]"
        )
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return {
        "payload": text,
        "payload_encoding": encoding,
        "attributes": [
            {"key": str(key), "value": str(value)} for key, value in (attributes or {}).items()
        ],
        "message_id": message_id,
        "reason": reason,
        "error": error[-2000:],
        "stage": stage,
        "received_ts": format_ts(received_ts_ms),
    }


def dead_letter_row_id(row: Mapping[str, Any]) -> str:
    """Redelivered poison messages keep their id; rows without one dedupe on their content."""
    if row.get("message_id"):
        return f"{row['stage']}:{row['message_id']}"
    digest = hashlib.blake2b(
        f"{row['stage']}|{row['reason']}|{row['payload']}".encode(), digest_size=16
    )
    return digest.hexdigest()


def refused_row_id(table: str, row_id: str) -> str:
    """The message id of the dead letter for a row BigQuery refused: it names the row (a
    quote's event_id), since one message can become rows of several tables."""
    return f"{table}:{row_id}"
