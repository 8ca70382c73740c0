from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotestream.domain import InvalidQuote, Reason, parse_quote
from quotestream.domain.validation import FIELDS, MAX_MESSAGE_BYTES, check_timely
from tests.support.builders import NOW_MS, quote_bytes, quote_dict

pytestmark = pytest.mark.unit


def parse(payload: bytes, attributes: dict[str, str] | None = None):
    return parse_quote(payload, attributes, now_ms=NOW_MS)


def reason_of(payload: bytes, attributes: dict[str, str] | None = None) -> Reason:
    with pytest.raises(InvalidQuote) as caught:
        parse(payload, attributes)
    return caught.value.reason


def test_valid_quote_parses_with_exact_decimals() -> None:
    quote = parse(quote_bytes(bid="5.35", ask="5.3511"))
    assert quote.bid == Decimal("5.3500")
    assert str(quote.bid) == "5.3500"
    assert str(quote.mid) == "5.35055"
    assert str(quote.spread) == "0.0011"
    assert quote.base == "USD"
    assert quote.quote_currency == "BRL"


def test_the_served_json_round_trips_byte_for_byte() -> None:
    quote = parse(quote_bytes())
    assert parse(quote.to_json()) == quote
    assert parse(quote.to_json()).to_json() == quote.to_json()


def test_matching_attributes_pass_and_a_mismatch_is_rejected() -> None:
    quote = parse(quote_bytes())
    assert parse(quote.to_json(), quote.pubsub_attributes()) == quote
    assert reason_of(quote.to_json(), {"pair": "EUR-BRL"}) is Reason.ATTRIBUTE_MISMATCH


def test_locked_market_with_zero_spread_is_valid() -> None:
    assert parse(quote_bytes(bid="5.3500", ask="5.3500")).spread == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX_MESSAGE_BYTES + 1), Reason.TOO_LARGE),
        (b"\xff\xfe{}", Reason.BAD_ENCODING),
        (b'{"pair": ', Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b"[" * 2000 + b"]" * 2000, Reason.MALFORMED_JSON),
        (b"NaN", Reason.NOT_AN_OBJECT),
        (b"[1, 2]", Reason.NOT_AN_OBJECT),
        (b'"a string"', Reason.NOT_AN_OBJECT),
        (b'{"bid": "1", "bid": "2"}', Reason.DUPLICATE_FIELD),
    ],
)
def test_unparseable_bytes(payload: bytes, reason: Reason) -> None:
    assert reason_of(payload) is reason


def test_oversized_input_is_rejected_before_decoding() -> None:
    valid_but_padded = json.dumps({**quote_dict(), "pad": " " * MAX_MESSAGE_BYTES}).encode()
    assert reason_of(valid_but_padded) is Reason.TOO_LARGE


@pytest.mark.parametrize("missing", FIELDS)
def test_each_missing_field_is_named(missing: str) -> None:
    document = quote_dict()
    del document[missing]
    with pytest.raises(InvalidQuote) as caught:
        parse(json.dumps(document).encode())
    assert caught.value.reason is Reason.MISSING_FIELD
    assert caught.value.field == missing


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"extra": "1"}, Reason.UNEXPECTED_FIELD),
        ({"bid": 5.35}, Reason.BAD_TYPE),
        ({"event_ts": None}, Reason.BAD_TYPE),
        ({"pair": "XXX-YYY"}, Reason.UNKNOWN_PAIR),
        ({"base": "EUR"}, Reason.PAIR_MISMATCH),
        ({"source": "Bad Source!"}, Reason.BAD_SOURCE),
        ({"event_ts": "2026-11-18 10:00:00"}, Reason.BAD_TIMESTAMP),
        ({"event_ts": "2026-02-30T10:00:00.000Z"}, Reason.BAD_TIMESTAMP),
        ({"bid": "5,35"}, Reason.BAD_PRICE),
        ({"bid": "1e3"}, Reason.BAD_PRICE),
        ({"bid": "NaN"}, Reason.BAD_PRICE),
        ({"mid": "5.3505"}, None),
        ({"mid": "5.3506"}, Reason.INCONSISTENT_PRICE),
        ({"spread": "0.0002"}, Reason.INCONSISTENT_PRICE),
        ({"event_id": "0" * 32}, Reason.BAD_EVENT_ID),
    ],
)
def test_field_level_rejections(overrides: dict[str, object], reason: Reason | None) -> None:
    payload = json.dumps(quote_dict(**overrides)).encode()
    if reason is None:
        parse(payload)
    else:
        assert reason_of(payload) is reason


@pytest.mark.parametrize(
    ("bid", "ask", "reason"),
    [
        ("0", "5.3510", Reason.NON_POSITIVE_PRICE),
        ("-5.3500", "5.3510", Reason.NON_POSITIVE_PRICE),
        ("5.3520", "5.3510", Reason.CROSSED_MARKET),
        ("5.35001", "5.3510", Reason.BAD_PRECISION),
    ],
)
def test_price_rules(bid: str, ask: str, reason: Reason) -> None:
    assert reason_of(quote_bytes(bid=bid, ask=ask)) is reason


def test_future_timestamps_beyond_the_tolerance_are_rejected() -> None:
    assert parse(quote_bytes(event_ts_ms=NOW_MS + 4_000))
    assert reason_of(quote_bytes(event_ts_ms=NOW_MS + 60_000)) is Reason.FUTURE_TIMESTAMP


HOUR_MS = 3_600_000


def test_the_live_horizon_refuses_older_quotes_as_too_old_and_history_takes_them() -> None:
    month_old = quote_bytes(event_ts_ms=NOW_MS - 30 * 24 * HOUR_MS)
    live = {"now_ms": NOW_MS, "max_age_ms": 6 * HOUR_MS}
    assert parse_quote(quote_bytes(event_ts_ms=NOW_MS - 6 * HOUR_MS), **live)
    for payload in (month_old, quote_bytes(event_ts_ms=NOW_MS - 6 * HOUR_MS - 1)):
        with pytest.raises(InvalidQuote) as caught:
            parse_quote(payload, **live)
        assert caught.value.reason is Reason.TOO_OLD
        assert caught.value.field == "event_ts"
    # Without a horizon (the backfill, the dead-letter replay) history parses.
    assert parse(month_old).event_ts_ms == NOW_MS - 30 * 24 * HOUR_MS


def test_the_checks_that_change_with_time_judge_an_accepted_quote_again() -> None:
    """The local source asks the gate without the clock; the load's gate asks it again."""
    quote = parse_quote(quote_bytes(event_ts_ms=NOW_MS - 2 * HOUR_MS), now_ms=2**62)
    assert check_timely(quote, None, now_ms=NOW_MS) is quote
    assert check_timely(quote, 3 * HOUR_MS, now_ms=NOW_MS) is quote
    for max_age_ms, now_ms, reason in (
        (HOUR_MS, NOW_MS, Reason.TOO_OLD),
        (None, NOW_MS - 3 * HOUR_MS, Reason.FUTURE_TIMESTAMP),
    ):
        with pytest.raises(InvalidQuote) as caught:
            check_timely(quote, max_age_ms, now_ms=now_ms)
        assert caught.value.reason is reason


def test_event_id_is_stable_and_depends_on_pair_time_and_source() -> None:
    first = parse(quote_bytes(event_ts_ms=NOW_MS - 5))
    again = parse(quote_bytes(event_ts_ms=NOW_MS - 5, bid="5.3400"))
    other_source = parse(quote_bytes(event_ts_ms=NOW_MS - 5, source="other"))
    assert first.event_id == again.event_id
    assert first.event_id != other_source.event_id


OUTCOMES = {"parsed", *Reason}


def outcome(payload: bytes) -> str:
    """ "parsed" or the rejection reason; any other exception escapes and fails the test."""
    try:
        parse(payload)
    except InvalidQuote as error:
        return error.reason
    return "parsed"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=5000))
def test_any_bytes_either_parse_or_raise_invalid_quote(payload: bytes) -> None:
    assert outcome(payload) in OUTCOMES


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*FIELDS, "other"]),
        st.one_of(
            st.none(), st.integers(), st.floats(), st.text(max_size=30), st.lists(st.integers())
        ),
    )
)
def test_any_json_object_either_parses_or_raises_invalid_quote(document: dict[str, object]) -> None:
    assert outcome(json.dumps(document).encode()) in OUTCOMES


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"bid": "\u0665.3500"}, Reason.BAD_PRICE),  # an Arabic-Indic digit
        ({"bid": "0005.3500"}, Reason.BAD_PRICE),
        (
            {"spread": "-0.0000", "bid": "5.3500", "ask": "5.3500", "mid": "5.3500"},
            Reason.NON_POSITIVE_PRICE,
        ),
        ({"event_ts": "0001-01-01T00:00:00.000Z"}, Reason.BAD_TIMESTAMP),
        ({"event_ts": "2026-11-18T10:00:00.\u0661\u0662\u0663Z"}, Reason.BAD_TIMESTAMP),
    ],
)
def test_only_the_canonical_form_passes(overrides: dict[str, str], reason: Reason) -> None:
    assert reason_of(json.dumps(quote_dict(**overrides)).encode()) is reason


def test_a_memoryview_is_measured_in_bytes() -> None:
    import array

    wide = memoryview(array.array("I", [32] * 2000))  # 2000 items, 8000 bytes
    assert reason_of(wide) is Reason.TOO_LARGE
