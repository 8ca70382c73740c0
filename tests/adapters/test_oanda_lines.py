"""OANDA v20 pricing-stream lines -> quotes in the gate's form (adapters/oanda.py), and what
the gate then says of them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from quotestream.adapters.oanda import (
    MAX_LINE_BYTES,
    SOURCE,
    Backoff,
    Dropped,
    Heartbeat,
    Price,
    instrument_of,
    pair_of,
    read_line,
)
from quotestream.domain import PAIR_CATALOG, Quote, parse_quote
from quotestream.domain.validation import InvalidQuote
from quotestream.ports.sources import UnreadableLine
from tests.support.standins.oanda import price_line

pytestmark = pytest.mark.unit

PAIRS = {pair: PAIR_CATALOG[pair] for pair in ("EUR-USD", "USD-JPY")}
TIME_NS = 1_795_000_000_123_456_789  # 2026-11-18T...:40.123456789Z
TIME_MS = 1_795_000_000_123


def price(**changes: object) -> bytes:
    document = json.loads(price_line("EUR_USD", 3, TIME_NS))
    document.update(changes)
    return json.dumps(document).encode()


def gate(quote: dict[str, str]) -> Quote:
    return parse_quote(json.dumps(quote).encode(), now_ms=TIME_MS)


def test_a_price_becomes_a_quote_the_gate_accepts_with_its_own_source() -> None:
    line = price(
        bids=[{"price": "1.08490", "liquidity": 1}, {"price": "1.08492", "liquidity": 5}],
        asks=[{"price": "1.08501", "liquidity": 1}, {"price": "1.08499", "liquidity": 5}],
    )
    read = read_line(line, PAIRS)
    assert isinstance(read, Price)
    quote = read.quote
    accepted = gate(quote)
    assert accepted.source == SOURCE == "oanda"
    assert accepted.pair == "EUR-USD"
    # The best of each ladder, whatever its order; mid and spread from them.
    assert (accepted.bid, accepted.ask) == (Decimal("1.08492"), Decimal("1.08499"))
    assert accepted.mid == Decimal("1.084955")
    assert accepted.spread == Decimal("0.00007")
    # Nanoseconds cut to the millisecond, the gate's resolution.
    assert accepted.event_ts_ms == TIME_MS == read.event_ms
    assert quote["event_ts"].endswith(".123Z")


def test_the_closeout_prices_are_not_quotes() -> None:
    read = read_line(price(closeoutBid="1.00000", closeoutAsk="2.00000"), PAIRS)
    assert isinstance(read, Price)
    assert "1.00000" not in read.quote.values()
    assert "2.00000" not in read.quote.values()


def test_the_same_price_again_has_the_same_event_id() -> None:
    assert read_line(price(), PAIRS) == read_line(price(), PAIRS)


def test_a_heartbeat_is_no_quote() -> None:
    line = json.dumps({"type": "HEARTBEAT", "time": "2026-12-07T10:00:00.000000000Z"})
    assert read_line(line.encode(), PAIRS) == Heartbeat("2026-12-07T10:00:00.000000000Z")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (price_line("AUD_USD", 1, TIME_NS), "unconfigured_instrument"),
        (price_line("GBP_USD", 1, TIME_NS), "unconfigured_instrument"),  # known, not configured
        (price(tradeable=False), "not_tradeable"),
        (price(bids=[]), "no_liquidity"),
        (price(asks=[]), "no_liquidity"),
    ],
)
def test_valid_prices_that_are_no_quote_to_store_are_dropped_by_reason(
    line: bytes, reason: str
) -> None:
    dropped = read_line(line, PAIRS)
    assert isinstance(dropped, Dropped)
    assert dropped.reason == reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"type":"PRICE","instrument":"EUR_USD","ti', "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"type":"TRADE"}', "unknown_type"),
        (b'{"instrument":"EUR_USD"}', "unknown_type"),
        (price(time=None), "missing_field"),
        (price(instrument=7), "missing_field"),
        (price(bids="1.08"), "missing_field"),
        (price(bids=[{"price": 1.08, "liquidity": 1}]), "bad_bucket"),
        (price(asks=[{"liquidity": 1}]), "bad_bucket"),
    ],
)
def test_lines_no_quote_can_be_made_of_are_kept_as_received_with_a_reason(
    line: bytes, reason: str
) -> None:
    unreadable = read_line(line, PAIRS)
    assert isinstance(unreadable, UnreadableLine)
    assert (unreadable.reason, unreadable.payload, unreadable.source) == (reason, line, "oanda")
    assert unreadable.attributes()["source_reason"] == reason
    # The gate refuses the line as received: it becomes a dead letter with the gate's reason.
    with pytest.raises(InvalidQuote):
        parse_quote(line)


@pytest.mark.parametrize(
    ("changes", "gate_reason"),
    [
        ({"bids": [{"price": "1.0849x", "liquidity": 1}]}, "bad_price"),
        ({"asks": [{"price": "", "liquidity": 1}]}, "bad_price"),
        ({"bids": [{"price": "1.084901", "liquidity": 1}]}, "bad_precision"),
        ({"bids": [{"price": "1.09000", "liquidity": 1}]}, "crossed_market"),
        ({"time": "yesterday"}, "bad_timestamp"),
        ({"time": "2026-13-01T00:00:00.000000000Z"}, "bad_timestamp"),
        ({"instrument": "USD_JPY"}, "bad_precision"),  # EUR_USD's five decimals on a 3-decimal pair
    ],
)
def test_what_the_gate_judges_goes_to_the_gate_as_received(
    changes: dict[str, object], gate_reason: str
) -> None:
    read = read_line(price(**changes), PAIRS)
    assert isinstance(read, Price)
    with pytest.raises(InvalidQuote) as refused:
        gate(read.quote)
    assert refused.value.reason == gate_reason


def test_instrument_names_map_to_pairs() -> None:
    assert pair_of("EUR_USD") == "EUR-USD"
    assert instrument_of("USD-JPY") == "USD_JPY"


def test_the_backoff_doubles_is_bounded_and_jittered() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.delay(n, 1.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(0, 0.0) == 0.25
    assert backoff.delay(100, 0.0) == 2.0
    assert all(0.25 <= backoff.delay(0, d / 10) < 0.5 for d in range(10))


def test_a_line_past_the_longest_is_not_parsed_and_kept_cut_to_it() -> None:
    line = b'{"type":"PRICE","pad":"' + b"x" * MAX_LINE_BYTES + b'"}'
    unreadable = read_line(line, PAIRS)
    assert isinstance(unreadable, UnreadableLine)
    assert unreadable.reason == "too_long"
    assert unreadable.payload == line[:MAX_LINE_BYTES]
