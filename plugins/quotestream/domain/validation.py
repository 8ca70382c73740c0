"""The single gate every quote passes, in the API and in the pipeline.

`parse_quote` accepts exactly the JSON the API serves for a quote (`Quote.to_json`) and turns
anything else into `InvalidQuote` with a machine-readable reason. It never raises anything
else, whatever the bytes, and it refuses oversized input before decoding it.

Only a caller that passes `max_age_ms` (the live load) refuses quotes older than that as
`too_old`; the backfill and the dead-letter replay, which exist for history, pass none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from quotestream.domain.pairs import PAIR_CATALOG, PairSpec
from quotestream.domain.quote import Quote, make_event_id, to_ms
from quotestream.domain.quote import now_ms as current_time_ms

MAX_MESSAGE_BYTES = 4096
# Producers' clocks drift; a quote a little ahead of ours is still plausible.
FUTURE_TOLERANCE_MS = 5_000

FIELDS = (
    "event_id",
    "pair",
    "base",
    "quote_currency",
    "bid",
    "ask",
    "mid",
    "spread",
    "event_ts",
    "source",
)
_FIELD_SET = frozenset(FIELDS)
# ASCII digits only (`\d` would take any script's digits), no leading zeros, no exponent;
# a leading minus is parsed so a negative price is reported as such.
_PRICE = re.compile(r"(-?)(0|[1-9][0-9]{0,19})(?:\.([0-9]{1,20}))?")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z"
)
_OLDEST_YEAR = 2000
_SOURCE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class Reason(StrEnum):
    TOO_LARGE = "too_large"
    BAD_ENCODING = "bad_encoding"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    DUPLICATE_FIELD = "duplicate_field"
    MISSING_FIELD = "missing_field"
    UNEXPECTED_FIELD = "unexpected_field"
    BAD_TYPE = "bad_type"
    UNKNOWN_PAIR = "unknown_pair"
    PAIR_MISMATCH = "pair_mismatch"
    BAD_SOURCE = "bad_source"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    BAD_PRICE = "bad_price"
    BAD_PRECISION = "bad_precision"
    NON_POSITIVE_PRICE = "non_positive_price"
    CROSSED_MARKET = "crossed_market"
    INCONSISTENT_PRICE = "inconsistent_price"
    BAD_EVENT_ID = "bad_event_id"
    ATTRIBUTE_MISMATCH = "attribute_mismatch"


class InvalidQuote(ValueError):
    """A rejected message. `reason` is stable and machine-readable; `detail` is for people."""

    def __init__(self, reason: Reason, detail: str, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


def parse_quote(
    payload: bytes,
    attributes: Mapping[str, str] | None = None,
    *,
    pairs: Mapping[str, PairSpec] = PAIR_CATALOG,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
) -> Quote:
    """Parse and validate one message body (and its Pub/Sub attributes, when it has any);
    with `max_age_ms`, a quote older than that is refused as `too_old`."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise InvalidQuote(Reason.BAD_TYPE, f"payload must be bytes, not {type(payload).__name__}")
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    if size > MAX_MESSAGE_BYTES:
        raise InvalidQuote(
            Reason.TOO_LARGE, f"{size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidQuote(Reason.BAD_ENCODING, f"not UTF-8: {error.reason}") from None
    document = loads_json(text)
    return quote_from_mapping(
        document, attributes, pairs=pairs, now_ms=now_ms, max_age_ms=max_age_ms
    )


def quote_from_mapping(
    document: Any,
    attributes: Mapping[str, str] | None = None,
    *,
    pairs: Mapping[str, PairSpec] = PAIR_CATALOG,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
) -> Quote:
    """The gate's second half, for callers that already decoded JSON (a batch in the API)."""
    if isinstance(document, DuplicatedKeys):
        raise InvalidQuote(
            Reason.DUPLICATE_FIELD, f"field {document.key!r} appears twice", document.key
        )
    if not isinstance(document, dict):
        raise InvalidQuote(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_kind(document)}")
    missing = [name for name in FIELDS if name not in document]
    if missing:
        raise InvalidQuote(Reason.MISSING_FIELD, f"missing {', '.join(missing)}", missing[0])
    if len(document) != len(FIELDS):
        unexpected = sorted(str(key) for key in document if key not in _FIELD_SET)
        raise InvalidQuote(
            Reason.UNEXPECTED_FIELD, f"unexpected {', '.join(unexpected)}", unexpected[0]
        )
    for name in FIELDS:
        if not isinstance(document[name], str):
            raise InvalidQuote(
                Reason.BAD_TYPE, f"{name} must be a string, got {_kind(document[name])}", name
            )

    pair = document["pair"]
    spec = pairs.get(pair)
    if spec is None:
        raise InvalidQuote(Reason.UNKNOWN_PAIR, f"unknown pair {pair[:32]!r}", "pair")
    if document["base"] != spec.base or document["quote_currency"] != spec.quote_currency:
        raise InvalidQuote(
            Reason.PAIR_MISMATCH,
            f"{pair} is {spec.base}/{spec.quote_currency}, "
            f"not {document['base'][:8]!r}/{document['quote_currency'][:8]!r}",
            "base",
        )
    source = document["source"]
    if not _SOURCE.fullmatch(source):
        raise InvalidQuote(
            Reason.BAD_SOURCE, "source must be 1-64 of [a-z0-9._-], starting alphanumeric", "source"
        )

    event_ts_ms = _parse_timestamp(document["event_ts"])
    _check_timely(event_ts_ms, now_ms, max_age_ms)

    bid = _parse_price(document, "bid", spec.scale)
    ask = _parse_price(document, "ask", spec.scale)
    if bid > ask:
        raise InvalidQuote(Reason.CROSSED_MARKET, f"bid {bid} is above ask {ask}", "bid")
    mid = _parse_price(document, "mid", spec.mid_scale)
    spread = _parse_price(document, "spread", spec.scale, allow_zero=True)
    if mid * 2 != bid + ask or spread != ask - bid:
        raise InvalidQuote(
            Reason.INCONSISTENT_PRICE,
            f"mid must be {(bid + ask) / 2} and spread {ask - bid}",
            "mid" if mid * 2 != bid + ask else "spread",
        )

    event_id = make_event_id(pair, event_ts_ms, source)
    if document["event_id"] != event_id:
        raise InvalidQuote(
            Reason.BAD_EVENT_ID,
            "event_id does not match pair, event_ts and source",
            "event_id",
        )
    quote = Quote(
        event_id=event_id,
        pair=pair,
        base=spec.base,
        quote_currency=spec.quote_currency,
        bid=bid.quantize(_EXPONENTS[spec.scale]),
        ask=ask.quantize(_EXPONENTS[spec.scale]),
        mid=mid.quantize(_EXPONENTS[spec.mid_scale]),
        spread=spread.quantize(_EXPONENTS[spec.scale]),
        event_ts_ms=event_ts_ms,
        source=source,
    )
    if attributes:
        _check_attributes(quote, attributes)
    return quote


def check_timely(quote: Quote, max_age_ms: int | None, now_ms: int | None = None) -> Quote:
    """The gate's checks that change with time, for a quote the gate accepted when asked
    without them (`now_ms` far ahead, no `max_age_ms`): together, the gate's verdict now."""
    _check_timely(quote.event_ts_ms, now_ms, max_age_ms)
    return quote


def _check_timely(event_ts_ms: int, now_ms: int | None, max_age_ms: int | None) -> None:
    current_ms = current_time_ms() if now_ms is None else now_ms
    if event_ts_ms > current_ms + FUTURE_TOLERANCE_MS:
        raise InvalidQuote(
            Reason.FUTURE_TIMESTAMP,
            f"event_ts is {event_ts_ms - current_ms} ms in the future",
            "event_ts",
        )
    if max_age_ms is not None and current_ms - event_ts_ms > max_age_ms:
        raise InvalidQuote(
            Reason.TOO_OLD,
            f"event_ts is {current_ms - event_ts_ms} ms old, beyond the live load's "
            f"{max_age_ms} ms horizon (the backfill and the dead-letter replay take history)",
            "event_ts",
        )


_EXPONENTS = {scale: Decimal(1).scaleb(-scale) for scale in range(0, 21)}


class DuplicatedKeys:
    """Stands in for a JSON object that names a key twice: which value would count is
    ambiguous, so such an object is rejected rather than resolved silently."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def _object_or_duplicate(items: list[tuple[str, Any]]) -> dict[str, Any] | DuplicatedKeys:
    document = dict(items)
    if len(document) == len(items):
        return document
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            return DuplicatedKeys(key[:32])
        seen.add(key)
    raise AssertionError("unreachable: a shorter dict implies a repeated key")


_DECODER = json.JSONDecoder(object_pairs_hook=_object_or_duplicate)


def loads_json(text: str) -> Any:
    """json.loads that flags repeated keys and turns every decoding failure into
    MALFORMED_JSON (deep nesting raises RecursionError, which must not escape)."""
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        raise InvalidQuote(Reason.MALFORMED_JSON, _first_line(error)) from None


def is_event_ts(text: object) -> bool:
    """Whether `text` is an event_ts the gate accepts (RFC 3339 UTC with milliseconds)."""
    return event_ms_of(text) is not None


def event_ms_of(text: object) -> int | None:
    """An event_ts the gate accepts as epoch milliseconds; None for any other value."""
    if not isinstance(text, str):
        return None
    try:
        return _parse_timestamp(text)
    except InvalidQuote:
        return None


def _parse_timestamp(text: str) -> int:
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise InvalidQuote(
            Reason.BAD_TIMESTAMP,
            "event_ts must be RFC 3339 UTC with milliseconds, like 2026-01-31T12:00:00.000Z",
            "event_ts",
        )
    year, month, day, hour, minute, second, millis = map(int, match.groups())
    if year < _OLDEST_YEAR:
        raise InvalidQuote(
            Reason.BAD_TIMESTAMP, f"event_ts before {_OLDEST_YEAR} is not a live quote", "event_ts"
        )
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:
        raise InvalidQuote(Reason.BAD_TIMESTAMP, f"event_ts: {error}", "event_ts") from None
    return to_ms(moment) + millis


def _parse_price(
    document: Mapping[str, str], name: str, scale: int, *, allow_zero: bool = False
) -> Decimal:
    text = document[name]
    match = _PRICE.fullmatch(text)
    if match is None:
        raise InvalidQuote(
            Reason.BAD_PRICE, f"{name} must be a plain decimal string like '5.1234'", name
        )
    sign, _, decimals = match.groups()
    if decimals is not None and len(decimals) > scale:
        raise InvalidQuote(
            Reason.BAD_PRECISION, f"{name} has {len(decimals)} decimals, at most {scale}", name
        )
    value = Decimal(text)
    if sign or (value == 0 and not allow_zero):
        raise InvalidQuote(Reason.NON_POSITIVE_PRICE, f"{name} must be positive, got {text}", name)
    return value


def _check_attributes(quote: Quote, attributes: Mapping[str, str]) -> None:
    expected = quote.pubsub_attributes()
    for key, value in expected.items():
        given = attributes.get(key)
        if given is not None and given != value:
            raise InvalidQuote(
                Reason.ATTRIBUTE_MISMATCH,
                f"attribute {key}={given[:40]!r} disagrees with the payload's {value!r}",
                key,
            )


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]
