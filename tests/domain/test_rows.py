from __future__ import annotations

import base64
import hashlib

import pytest

from quotestream.domain.rows import DEAD_LETTER_PAYLOAD_BYTES, dead_letter_row

pytestmark = pytest.mark.unit


def test_a_huge_payload_keeps_its_head_its_size_and_its_digest() -> None:
    payload = b"\xff" + b"x" * (3 * DEAD_LETTER_PAYLOAD_BYTES)
    row = dead_letter_row(
        payload,
        {"a": "b"},
        reason="too_large",
        error="too big",
        stage="parse",
        received_ts_ms=0,
        message_id="m1",
    )
    assert row["payload_encoding"] == "base64"
    assert base64.b64decode(row["payload"]) == payload[:DEAD_LETTER_PAYLOAD_BYTES]
    assert f"of {len(payload)} bytes" in row["error"]
    assert hashlib.sha256(payload).hexdigest() in row["error"]
    assert row["attributes"] == [{"key": "a", "value": "b"}]


def test_a_small_text_payload_is_kept_whole() -> None:
    row = dead_letter_row(b'{"x": 1}', None, reason="r", error="e", stage="parse", received_ts_ms=0)
    assert (row["payload"], row["payload_encoding"], row["error"]) == ('{"x": 1}', "utf-8", "e")
