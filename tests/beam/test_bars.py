from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from quotestream.beam.bars import MinuteBarsFn, OneMinuteBars, ohlc
from quotestream.domain.quote import Quote, format_ts, make_event_id
from tests.support.pipelines import direct_pipeline

pytestmark = pytest.mark.unit

MINUTE_MS = 60_000
T0 = 1_795_000_020 * 1000 - (1_795_000_020 * 1000) % MINUTE_MS  # a minute boundary


def quote(offset_ms: int, mid: str, pair: str = "USD-BRL") -> Quote:
    ts = T0 + offset_ms
    value = Decimal(mid)
    return Quote(
        make_event_id(pair, ts, "test"),
        pair,
        pair[:3],
        pair[4:],
        value,
        value,
        value,
        Decimal(0),
        ts,
        "test",
    )


def bar(pair: str, minute: int, ohlc: tuple[str, str, str, str], ticks: int, pane: str):
    start = T0 + minute * MINUTE_MS
    return {
        "pair": pair,
        "window_start": format_ts(start),
        "window_end": format_ts(start + MINUTE_MS),
        "open": ohlc[0],
        "high": ohlc[1],
        "low": ohlc[2],
        "close": ohlc[3],
        "tick_count": ticks,
        "pane": pane,
        "pane_index": int(pane.split(":")[1]),
    }


def at(q: Quote) -> window.TimestampedValue:
    return window.TimestampedValue(q, q.event_ts_ms / 1000)


def test_ohlc_is_by_event_time_whatever_the_order_of_arrival() -> None:
    ticks = {
        q.event_id: (q.event_ts_ms, q.mid)
        for q in (
            quote(30_000, "5.2"),
            quote(10_000, "5.0"),
            quote(20_000, "5.9"),
            quote(50_000, "4.8"),
        )
    }
    assert ohlc(ticks) == {
        "open": "5.0",
        "high": "5.9",
        "low": "4.8",
        "close": "4.8",
        "tick_count": 4,
    }


def test_minutes_close_on_the_next_minute_or_the_watermark_and_late_quotes_restate() -> None:
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements(
            [
                at(quote(1_000, "5.10")),
                at(quote(30_000, "5.30")),
                at(quote(59_000, "5.20")),
                at(quote(5_000, "7.00", "BTC-USD")),
            ]
        )
        # The pair's first quote of the next minute closes its minute 0, watermark or not.
        .add_elements([at(quote(61_000, "5.25"))])
        # The watermark closes what is left open: USD-BRL minute 1, BTC-USD minute 0.
        .advance_watermark_to((T0 + 2 * MINUTE_MS) / 1000)
        # Within the 2-minute allowed lateness of the newest quote: the bar is restated.
        .add_elements([at(quote(40_000, "5.50"))])
        .add_elements([at(quote(5 * MINUTE_MS, "6.00"))])
        # Now more than 2 minutes behind the newest quote: dropped from the bars.
        .add_elements([at(quote(45_000, "9.99"))])
        # Before the end of input: what fires at the very end would miss assert_that.
        .advance_watermark_to((T0 + 7 * MINUTE_MS) / 1000)
        .advance_watermark_to_infinity()
    )
    assert_bars(
        stream,
        [
            bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.20"), 3, "ON_TIME:0"),
            bar("BTC-USD", 0, ("7.00", "7.00", "7.00", "7.00"), 1, "ON_TIME:0"),
            bar("USD-BRL", 1, ("5.25", "5.25", "5.25", "5.25"), 1, "ON_TIME:0"),
            bar("USD-BRL", 0, ("5.10", "5.50", "5.10", "5.20"), 4, "LATE:1"),
            bar("USD-BRL", 5, ("6.00", "6.00", "6.00", "6.00"), 1, "ON_TIME:0"),
        ],
    )


def assert_bars(stream: test_stream.TestStream, expected: list[dict[str, Any]]) -> None:
    """The bars a streaming run over `stream` emits, with 2 minutes of allowed lateness."""
    with direct_pipeline(streaming=True) as pipeline:
        bars = pipeline | stream | OneMinuteBars(allowed_lateness_s=120)
        assert_that(bars, equal_to(expected))


def test_the_first_quote_of_an_earlier_minute_after_the_watermark_passed_is_flushed() -> None:
    """A quote opening minute 0 after the watermark closed minute 1: the pair then sends
    nothing more, and minute 0 is emitted all the same, by the watermark."""
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([at(quote(61_000, "5.25"))])
        .advance_watermark_to((T0 + 2 * MINUTE_MS) / 1000)
        .add_elements([at(quote(30_000, "5.50"))])
        .advance_watermark_to((T0 + 3 * MINUTE_MS) / 1000)
        .advance_watermark_to_infinity()
    )
    assert_bars(
        stream,
        [
            bar("USD-BRL", 1, ("5.25", "5.25", "5.25", "5.25"), 1, "ON_TIME:0"),
            bar("USD-BRL", 0, ("5.50", "5.50", "5.50", "5.50"), 1, "ON_TIME:0"),
        ],
    )


def test_without_a_watermark_the_data_alone_closes_minutes() -> None:
    """What Beam's local runner does with a streaming source: the watermark never moves."""
    fn = MinuteBarsFn(allowed_lateness_ms=120_000)
    state = {"bars": FakeState(), "newest": FakeState()}

    def feed(q: Quote) -> list[dict[str, object]]:
        return list(fn.process((q.pair, q), state["bars"], state["newest"], FakeTimer()))

    assert feed(quote(1_000, "5.10")) == []
    assert feed(quote(59_000, "5.20")) == []
    assert feed(quote(59_000, "5.20")) == []  # a redelivered tick changes nothing
    assert feed(quote(60_500, "5.30")) == [
        bar("USD-BRL", 0, ("5.10", "5.20", "5.10", "5.20"), 2, "ON_TIME:0")
    ]
    assert feed(quote(2_000, "4.00")) == [
        bar("USD-BRL", 0, ("5.10", "5.20", "4.00", "5.20"), 3, "LATE:1")
    ]


class FakeState:
    def __init__(self) -> None:
        self.value: object = None

    def read(self) -> object:
        return self.value

    def write(self, value: object) -> None:
        self.value = value


class FakeTimer:
    def set(self, _timestamp: object) -> None:
        pass
