"""A corpus of hostile and broken messages, each with the reason the gate must give."""

from __future__ import annotations

import json

from quotestream.beam.messages import RawMessage
from quotestream.domain.validation import MAX_MESSAGE_BYTES
from tests.support.builders import quote_bytes, quote_dict


def bad_messages(now_ms: int) -> list[tuple[RawMessage, str]]:
    ts = now_ms - 30_000
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (b"{not json", {}, "malformed_json"),
        (b"", {}, "malformed_json"),
        (b"[1,2,3]", {}, "not_an_object"),
        (
            json.dumps(
                {k: v for k, v in quote_dict(event_ts_ms=ts).items() if k != "bid"}
            ).encode(),
            {},
            "missing_field",
        ),
        (json.dumps({**quote_dict(event_ts_ms=ts), "bid": 5.35}).encode(), {}, "bad_type"),
        (quote_bytes(bid="0", ask="5.3510", event_ts_ms=ts), {}, "non_positive_price"),
        (quote_bytes(bid="-1.0000", ask="5.3510", event_ts_ms=ts), {}, "non_positive_price"),
        (quote_bytes(bid="5.4000", ask="5.3510", event_ts_ms=ts), {}, "crossed_market"),
        (
            json.dumps({**quote_dict(event_ts_ms=ts), "pair": "XAU-USD"}).encode(),
            {},
            "unknown_pair",
        ),
        (quote_bytes(event_ts_ms=now_ms + 3_600_000), {}, "future_timestamp"),
        (b"\xff\xfe\xfd not utf-8", {}, "bad_encoding"),
        (b" " * (MAX_MESSAGE_BYTES + 1), {}, "too_large"),
        (quote_bytes(event_ts_ms=ts), {"pair": "EUR-BRL"}, "attribute_mismatch"),
    ]
    return [
        (RawMessage(data, attributes, f"bad-{index}"), reason)
        for index, (data, attributes, reason) in enumerate(cases)
    ]
