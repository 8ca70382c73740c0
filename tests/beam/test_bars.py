from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from quotestream.beam.bars import MinuteBarsFn, OneMinuteBars, bar_row_id, ohlc
from quotestream.domain.quote import Quote, format_ts, make_event_id
from quotestream.domain.rows import quote_row
from quotestream.domain.schemas import QUOTE_BARS_1M, QUOTES
from tests.support.fakes import InMemoryStoredRowLookups, shared_lookups
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


# What a job killed (or cancelled) mid-stream left stored, and what the next job makes of it.


@dataclass(frozen=True)
class BornAt:
    """A clock that reads `ms`: the moment a key's first quote reaches the job."""

    ms: int

    def __call__(self) -> int:
        return self.ms


def stored(
    quotes: Sequence[Quote], panes: Sequence[dict[str, Any]] = ()
) -> tuple[str, InMemoryStoredRowLookups]:
    """A fake warehouse holding the quote rows and bar rows an earlier job wrote."""
    name = f"bars-{uuid.uuid4()}"
    lookups = shared_lookups(name)
    lookups.warehouse.insert_rows(
        QUOTES.name,
        [quote_row(q, q.event_ts_ms + 1_000) for q in quotes],
        [q.event_id for q in quotes],
    )
    lookups.warehouse.insert_rows(
        QUOTE_BARS_1M.name, list(panes), [bar_row_id(row) for row in panes]
    )
    return name, lookups


def assert_bars_after_restart(
    name: str, born_ms: int, quotes: list[Quote], expected: list[dict[str, Any]]
) -> None:
    """The bars a new job emits from `quotes`, its keys born at `born_ms`, seeding from the
    warehouse `name`, with 2 minutes of allowed lateness."""
    with direct_pipeline() as pipeline:
        bars = (
            pipeline
            | beam.Create(quotes)
            | OneMinuteBars(120, partial(shared_lookups, name), BornAt(born_ms))
        )
        assert_that(bars, equal_to(expected))


def test_a_minute_an_earlier_job_had_open_is_completed_from_the_stored_quotes() -> None:
    # The earlier job stored (and so acknowledged) the first two quotes of minute 0, then died.
    name, lookups = stored([quote(1_000, "5.10"), quote(30_000, "5.30")])
    assert_bars_after_restart(
        name,
        T0 + 40_000,
        [quote(50_000, "5.20"), quote(61_000, "5.25")],
        [
            bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.20"), 3, "ON_TIME:0"),
            bar("USD-BRL", 1, ("5.25", "5.25", "5.25", "5.25"), 1, "ON_TIME:0"),
        ],
    )
    # One query at birth, from the oldest minute the first quote leaves restatable to the
    # last an earlier job may have seen (born + the gate's 5 s, rounded up to a minute):
    # minute 1 starts after the job's birth, no earlier job can have seen it.
    assert lookups.bar_lookups == [("USD-BRL", T0 - 2 * MINUTE_MS, T0 + MINUTE_MS)]


def test_panes_go_on_after_the_stored_final_one_with_every_tick() -> None:
    name, lookups = stored(
        [quote(1_000, "5.10"), quote(30_000, "5.30"), quote(40_000, "5.00")],
        [
            bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.30"), 2, "ON_TIME:0"),
            bar("USD-BRL", 0, ("5.10", "5.30", "5.00", "5.30"), 3, "LATE:1"),
        ],
    )
    assert_bars_after_restart(
        name,
        T0 + 2 * MINUTE_MS,
        [quote(50_000, "5.50")],
        [bar("USD-BRL", 0, ("5.10", "5.50", "5.00", "5.50"), 4, "LATE:2")],
    )
    assert lookups.bar_lookups == [("USD-BRL", T0 - 2 * MINUTE_MS, T0 + 3 * MINUTE_MS)]


def test_minutes_starting_after_the_jobs_birth_are_not_read() -> None:
    # Stored rows that would change the bars if they were read.
    name, lookups = stored(
        [quote(30_000, "9.00")], [bar("USD-BRL", 0, ("9", "9", "9", "9"), 1, "ON_TIME:0")]
    )
    assert_bars_after_restart(
        name,
        T0 - 10_000,
        [quote(1_000, "5.10"), quote(59_000, "5.20"), quote(61_000, "5.25")],
        [
            bar("USD-BRL", 0, ("5.10", "5.20", "5.10", "5.20"), 2, "ON_TIME:0"),
            bar("USD-BRL", 1, ("5.25", "5.25", "5.25", "5.25"), 1, "ON_TIME:0"),
        ],
    )
    assert lookups.bar_lookups == [("USD-BRL", T0 - 2 * MINUTE_MS, T0)]


def test_a_backlog_older_than_the_jobs_birth_goes_on_from_its_stored_bars() -> None:
    """Quotes of minutes long before the job was born (a drain after an outage): their stored
    bars are read by the same one query, and their panes go on."""
    name, lookups = stored(
        [quote(30_000, "9.00")],
        [bar("USD-BRL", 0, ("9.00", "9.00", "9.00", "9.00"), 1, "ON_TIME:0")],
    )
    assert_bars_after_restart(
        name,
        T0 + 10 * MINUTE_MS,
        [quote(1_000, "5.10"), quote(59_000, "5.20")],
        [
            bar("USD-BRL", 0, ("5.10", "9.00", "5.10", "9.00"), 2, "LATE:1"),
            bar("USD-BRL", 0, ("5.10", "9.00", "5.10", "5.20"), 3, "LATE:2"),
        ],
    )
    assert lookups.bar_lookups == [("USD-BRL", T0 - 2 * MINUTE_MS, T0 + 11 * MINUTE_MS)]


def test_a_quote_delivered_again_that_the_stored_pane_counts_changes_nothing() -> None:
    """The earlier job stored the quote at 50 s and its pane, but died before acknowledging
    it: it comes again, and only the fresh quote at 55 s restates the bar."""
    ticks = [quote(1_000, "5.10"), quote(30_000, "5.30"), quote(50_000, "5.20")]
    name, _ = stored(ticks, [bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.20"), 3, "ON_TIME:0")])
    assert_bars_after_restart(
        name,
        T0 + 2 * MINUTE_MS,
        [quote(50_000, "5.20"), quote(55_000, "5.40")],
        [bar("USD-BRL", 0, ("5.10", "5.40", "5.10", "5.40"), 4, "LATE:1")],
    )


def test_a_stored_quote_the_stored_pane_lacks_restates_it_once() -> None:
    """The late quote at 50 s reached `quotes` before its bar (this job's writer, or the
    earlier job's, ran ahead): it counts once, and the bar is restated with it."""
    ticks = [quote(1_000, "5.10"), quote(30_000, "5.30"), quote(50_000, "5.60")]
    name, _ = stored(ticks, [bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.30"), 2, "ON_TIME:0")])
    assert_bars_after_restart(
        name,
        T0 + 2 * MINUTE_MS,
        [quote(50_000, "5.60")],
        [bar("USD-BRL", 0, ("5.10", "5.60", "5.10", "5.60"), 3, "LATE:1")],
    )


def test_a_lookup_that_fails_is_tried_again_not_skipped() -> None:
    name, lookups = stored(
        [quote(1_000, "5.10")],
        [bar("USD-BRL", 0, ("5.10", "5.10", "5.10", "5.10"), 1, "ON_TIME:0")],
    )
    lookups.failing_bar_lookups = 1
    assert_bars_after_restart(
        name,
        T0 + 2 * MINUTE_MS,
        [quote(20_000, "5.00")],
        [bar("USD-BRL", 0, ("5.10", "5.10", "5.00", "5.00"), 2, "LATE:1")],
    )
    assert lookups.bar_lookups == [("USD-BRL", T0 - 2 * MINUTE_MS, T0 + 3 * MINUTE_MS)] * 2


# Minutes whose quotes an earlier job all stored, so acknowledged: none comes to the next job.


def new_job(name: str, born_ms: int) -> Callable[[Quote], list[dict[str, Any]]]:
    """A new job's MinuteBarsFn, its keys born at `born_ms`, seeding from the warehouse `name`,
    with 2 minutes of allowed lateness: a quote fed in -> the bars it emits."""
    fn = MinuteBarsFn(120_000, partial(shared_lookups, name), BornAt(born_ms))
    fn.setup()
    states: dict[str, tuple[FakeState, FakeState, FakeState]] = defaultdict(
        lambda: (FakeState(), FakeState(), FakeState())
    )

    def feed(q: Quote) -> list[dict[str, Any]]:
        bars, newest, born = states[q.pair]
        return list(fn.process((q.pair, q), bars, newest, FakeTimer(), born))

    return feed


def test_a_minute_stored_without_a_bar_is_emitted_once_at_the_keys_birth() -> None:
    name, lookups = stored([quote(1_000, "5.10"), quote(30_000, "5.30")])
    feed = new_job(name, T0 + 70_000)
    assert feed(quote(61_000, "5.25")) == [
        bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.30"), 2, "ON_TIME:0")
    ]
    assert feed(quote(62_000, "5.20")) == []
    assert feed(quote(121_000, "5.40")) == [
        bar("USD-BRL", 1, ("5.25", "5.25", "5.20", "5.20"), 2, "ON_TIME:0")
    ]
    assert lookups.bar_lookups == [("USD-BRL", T0 - MINUTE_MS, T0 + 2 * MINUTE_MS)]


def test_a_minute_whose_final_pane_lacks_a_stored_tick_is_restated_at_birth() -> None:
    name, _ = stored(
        [quote(1_000, "5.10"), quote(30_000, "5.30"), quote(50_000, "5.60")],
        [bar("USD-BRL", 0, ("5.10", "5.30", "5.10", "5.30"), 2, "ON_TIME:0")],
    )
    feed = new_job(name, T0 + 70_000)
    assert feed(quote(61_000, "5.25")) == [
        bar("USD-BRL", 0, ("5.10", "5.60", "5.10", "5.60"), 3, "LATE:1")
    ]
    # Kept as a bar emitted: a late quote restates it on top.
    assert feed(quote(55_000, "5.00")) == [
        bar("USD-BRL", 0, ("5.10", "5.60", "5.00", "5.00"), 4, "LATE:2")
    ]


def test_whole_minutes_and_minutes_no_quote_may_restate_are_left_alone() -> None:
    name, lookups = stored(
        [
            quote(-MINUTE_MS - 1_000, "4.00"),  # minute -2: short, but too old to restate
            quote(-30_000, "4.50"),  # minute -1: its pane counts it
            quote(1_000, "5.10"),  # minute 0: likewise
        ],
        [
            bar("USD-BRL", -1, ("4.50", "4.50", "4.50", "4.50"), 1, "ON_TIME:0"),
            bar("USD-BRL", 0, ("5.10", "5.10", "5.10", "5.10"), 1, "ON_TIME:0"),
        ],
    )
    feed = new_job(name, T0 + 70_000)
    assert feed(quote(61_000, "5.25")) == []
    assert feed(quote(121_000, "5.40")) == [
        bar("USD-BRL", 1, ("5.25", "5.25", "5.25", "5.25"), 1, "ON_TIME:0")
    ]
    # One query, at birth.
    assert lookups.bar_lookups == [("USD-BRL", T0 - MINUTE_MS, T0 + 2 * MINUTE_MS)]


def test_a_short_minute_later_than_the_first_quote_closes_as_any_minute() -> None:
    """The first quote to come again is older than a minute the earlier job stored whole
    without its bar: that minute waits in state for a later quote to close it."""
    name, _ = stored([quote(61_000, "5.25"), quote(90_000, "5.35")])
    feed = new_job(name, T0 + 2 * MINUTE_MS + 10_000)
    assert feed(quote(50_000, "5.20")) == []
    assert feed(quote(2 * MINUTE_MS + 15_000, "5.40")) == [
        bar("USD-BRL", 0, ("5.20", "5.20", "5.20", "5.20"), 1, "ON_TIME:0"),
        bar("USD-BRL", 1, ("5.25", "5.35", "5.25", "5.35"), 2, "ON_TIME:0"),
    ]


def test_the_stored_bars_are_read_once_per_key_birth() -> None:
    name, lookups = stored([quote(1_000, "5.10"), quote(2_000, "7.00", "BTC-USD")])
    feed = new_job(name, T0 + 70_000)
    for q in (
        quote(61_000, "5.25"),
        quote(62_000, "7.10", "BTC-USD"),
        quote(121_000, "5.40"),
        quote(3 * MINUTE_MS, "5.50"),
        quote(3 * MINUTE_MS, "7.20", "BTC-USD"),
    ):
        feed(q)
    assert sorted(pair for pair, _, _ in lookups.bar_lookups) == ["BTC-USD", "USD-BRL"]
    # A job after it: each key is born again.
    feed = new_job(name, T0 + 4 * MINUTE_MS)
    feed(quote(3 * MINUTE_MS + 1_000, "5.60"))
    assert [pair for pair, _, _ in lookups.bar_lookups[2:]] == ["USD-BRL"]
