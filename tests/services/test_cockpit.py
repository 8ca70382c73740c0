"""The operator page's figures over the in-memory fakes: what they show, how a pair goes quiet,
which failed hours are gaps, which bar pane counts, what a failing warehouse leaves, and what a
slow one costs a request (nothing: the last figures, marked stale)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from quotestream.ports.jobs import Job, JobState
from quotestream.services.cockpit import FRESH_FOR_S, CockpitService, Figures
from quotestream.services.streaming import StreamingService
from tests.support.fake_views import InMemoryPipelineViews
from tests.support.fakes import (
    InMemoryHealthQueries,
    InMemoryJobRunner,
    InMemoryQualityQueries,
    InMemoryWarehouse,
)
from tests.support.rows import MINUTE_MS, bar_at, dead_letter_at, quality_row, quote_at

pytestmark = pytest.mark.unit

NOW_MS = 1_795_000_020_000
HOUR_MS = 3_600_000
PAIRS = ("USD-BRL", "EUR-USD", "BTC-USD")


def cockpit(
    warehouse: InMemoryWarehouse,
    runner: InMemoryJobRunner | None = None,
    views: InMemoryPipelineViews | None = None,
) -> CockpitService:
    runner = runner or InMemoryJobRunner()
    bars = InMemoryQualityQueries(warehouse)
    health = InMemoryHealthQueries(warehouse)
    clock = lambda: NOW_MS / 1000  # noqa: E731
    streaming = StreamingService(runner, health, "quotes-load", clock=clock)
    views = views or InMemoryPipelineViews(warehouse)
    return CockpitService(runner, streaming, bars, views, PAIRS, clock=clock)


def test_jobs_show_state_since_and_id_and_an_absent_one_says_so() -> None:
    runner = InMemoryJobRunner()
    runner.jobs["quotestream-load"] = Job("quotestream-load", "j-7", JobState.RUNNING, NOW_MS - 5)
    figures = cockpit(InMemoryWarehouse(), runner).figures()
    assert [(j.name, j.state, j.job_id, j.since_ms) for j in figures.jobs] == [
        ("quotestream-extract", "absent", None, None),
        ("quotestream-load", "running", "j-7", NOW_MS - 5),
    ]
    assert "quotestream-extract is absent" in (figures.verdict or [])


def test_a_pair_is_quiet_after_thirty_of_its_ticks_and_at_least_a_minute() -> None:
    warehouse = InMemoryWarehouse()
    # USD-BRL ticks every second: 59 s is within its minute; BTC-USD every 250 ms: the same.
    rows = [quote_at(NOW_MS - 59_000), quote_at(NOW_MS - 61_000, pair="EUR-USD")]
    warehouse.insert_rows("quotes", rows)
    freshness = {p.pair: p for p in cockpit(warehouse).figures().freshness}
    assert not freshness["USD-BRL"].quiet
    assert freshness["USD-BRL"].age_s == 59.0
    assert freshness["EUR-USD"].quiet
    assert freshness["BTC-USD"].quiet
    assert freshness["BTC-USD"].newest_ms is None


def test_each_pair_shows_its_active_source_since_when_and_its_switches_in_the_hour() -> None:
    warehouse = InMemoryWarehouse()
    # EUR-USD: on sim, over to oanda before the hour, back to sim, on oanda again at -18 min.
    sources = {-70: "sim", -65: "oanda", -30: "sim", -18: "oanda", -1: "oanda"}
    rows = [
        quote_at(NOW_MS + minutes * MINUTE_MS, pair="EUR-USD", source=source)
        for minutes, source in sources.items()
    ]
    warehouse.insert_rows("quotes", [*rows, quote_at(NOW_MS - 5_000)])
    figures = cockpit(warehouse).figures()
    freshness = {p.pair: p for p in figures.freshness}
    euro = freshness["EUR-USD"]
    assert (euro.source, euro.source_since_ms, euro.source_switches) == (
        "oanda",
        NOW_MS - 18 * MINUTE_MS,
        2,
    )
    assert (freshness["USD-BRL"].source, freshness["USD-BRL"].source_switches) == ("test", 0)
    never = freshness["BTC-USD"]
    assert (never.source, never.source_since_ms, never.source_switches) == (None, None, 0)
    shown = {p["pair"]: p for p in figures.as_json()["freshness"]}
    assert (shown["EUR-USD"]["source"], shown["EUR-USD"]["source_switches"]) == ("oanda", 2)


def test_the_flow_of_the_last_hour() -> None:
    warehouse = InMemoryWarehouse()
    rows = [quote_at(NOW_MS - 10_000 - i, NOW_MS - 8_000) for i in range(3)]
    rows.append(quote_at(NOW_MS - 2 * HOUR_MS))  # written two hours ago
    warehouse.insert_rows("quotes", rows)
    warehouse.insert_rows("quotes_dead_letter", [dead_letter_at(NOW_MS - 1_000, "m1")])
    figures = cockpit(warehouse).figures()
    assert figures.rows_last_hour == 3
    assert figures.lag is not None
    assert figures.lag.rows == 3
    assert [(d.reason, d.count) for d in figures.dead_letters] == [("malformed_json", 1)]


def test_failed_hours_and_the_gaps_among_them_follow_the_newest_results() -> None:
    warehouse = InMemoryWarehouse()
    hour = NOW_MS - NOW_MS % HOUR_MS - HOUR_MS
    warehouse.insert_rows(
        "dq_results",
        [
            quality_row("volume", "USD-BRL", hour - HOUR_MS, False, "r1", NOW_MS - 9_000),
            quality_row(
                "volume", "USD-BRL", hour - HOUR_MS, True, "r3", NOW_MS - 1_000
            ),  # refilled
            quality_row("volume", "EUR-USD", hour, False, "r2", NOW_MS - 5_000),
            quality_row("duplicates", None, hour, False, "r2", NOW_MS - 5_000),
            quality_row("nulls", None, hour, True, "r2", NOW_MS - 5_000),
        ],
    )
    figures = cockpit(warehouse).figures()
    assert [r.run_id for r in figures.latest_quality] == ["r3"]
    assert [(h.interval_start_ms, h.failures) for h in figures.failed_hours] == [
        (hour, ["duplicates", "volume EUR-USD"])
    ]
    assert [(h.interval_start_ms, h.failures) for h in figures.open_gaps] == [
        (hour, ["volume EUR-USD"])
    ]


def test_bars_of_the_chosen_pair_take_each_minutes_final_pane() -> None:
    warehouse = InMemoryWarehouse()
    minute = NOW_MS - NOW_MS % MINUTE_MS - 5 * MINUTE_MS
    warehouse.insert_rows(
        "quote_bars_1m",
        [
            bar_at(minute, 0, "5.350"),
            bar_at(minute, 1, "5.351"),  # a late pane replaces it
            bar_at(minute + MINUTE_MS, None, "5.352"),
            bar_at(minute, 0, "1.1", pair="EUR-USD"),
        ],
    )
    service = cockpit(warehouse)
    bars = service.figures("USD-BRL").bars
    assert [(b.window_start_ms, b.close) for b in bars] == [
        (minute, 5.351),
        (minute + MINUTE_MS, 5.352),
    ]
    assert [b.close for b in service.figures("EUR-USD").bars] == [1.1]
    with pytest.raises(ValueError, match="unknown pair 'GBP-USD'"):
        service.figures("GBP-USD")


class Unreachable(InMemoryPipelineViews):
    def rows_per_minute(self, since_ms: int) -> Any:
        raise ConnectionError("connection refused")


def test_an_unreachable_warehouse_leaves_the_jobs_and_says_why() -> None:
    runner = InMemoryJobRunner()
    runner.launch("quotestream-load", "load", [])
    warehouse = InMemoryWarehouse()
    figures: Figures = cockpit(warehouse, runner, Unreachable(warehouse)).figures()
    assert figures.warehouse_error == "the warehouse cannot be reached: connection refused"
    assert [j.state for j in figures.jobs] == ["absent", "running"]
    assert figures.verdict is None
    assert figures.as_json()["warehouse_error"] == figures.warehouse_error


@dataclass
class CountingViews(InMemoryPipelineViews):
    readings: int = 0

    def rows_per_minute(self, since_ms: int) -> Any:
        self.readings += 1
        return super().rows_per_minute(since_ms)


def test_figures_are_read_again_only_after_ten_seconds_however_many_ask() -> None:
    now = [NOW_MS / 1000]
    warehouse = InMemoryWarehouse()
    runner = InMemoryJobRunner()
    bars = InMemoryQualityQueries(warehouse)
    health = InMemoryHealthQueries(warehouse)
    streaming = StreamingService(runner, health, "quotes-load", clock=lambda: now[0])
    views = CountingViews(warehouse)
    service = CockpitService(runner, streaming, bars, views, PAIRS, clock=lambda: now[0])
    first = service.figures()
    now[0] += 9.9
    assert service.figures() is first
    assert views.readings == 1
    service.figures("EUR-USD")  # another pair's bars: a reading of its own
    assert views.readings == 2
    now[0] += 0.1
    assert service.figures() is not first
    assert views.readings == 3


@dataclass
class SlowViews(InMemoryPipelineViews):
    """A warehouse that answers only while `gate` is open; `entered` tells a reading waits."""

    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)

    def rows_per_minute(self, since_ms: int) -> Any:
        self.entered.set()
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return super().rows_per_minute(since_ms)


def slow_cockpit(now: list[float], wait_for_reading_s: float) -> tuple[CockpitService, SlowViews]:
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows("quotes", [quote_at(NOW_MS - 5_000, NOW_MS - 4_000)])
    runner = InMemoryJobRunner()
    bars = InMemoryQualityQueries(warehouse)
    health = InMemoryHealthQueries(warehouse)
    streaming = StreamingService(runner, health, "quotes-load", clock=lambda: now[0])
    views = SlowViews(warehouse)
    service = CockpitService(
        runner,
        streaming,
        bars,
        views,
        PAIRS,
        clock=lambda: now[0],
        wait_for_reading_s=wait_for_reading_s,
    )
    return service, views


def test_a_request_during_a_slow_reading_gets_the_last_figures_at_once_marked_stale() -> None:
    now = [NOW_MS / 1000]
    service, views = slow_cockpit(now, wait_for_reading_s=30.0)
    views.gate.set()
    first = service.figures()
    assert (first.stale, first.rows_last_hour) == (False, 1)

    views.gate.clear()
    now[0] += FRESH_FOR_S
    with ThreadPoolExecutor(1) as pool:
        starter = pool.submit(service.figures)  # starts the reading, and waits for it
        assert views.entered.wait(10)
        asked = time.monotonic()
        during = service.figures()
        took_s = time.monotonic() - asked
        views.gate.set()
        newest = starter.result(timeout=10)
    assert took_s < 1.0
    assert during.stale
    assert during.reading_since_ms == NOW_MS + FRESH_FOR_S * 1000
    assert (during.generated_ms, during.rows_last_hour) == (first.generated_ms, 1)
    assert not first.stale  # the kept figures are not touched, only what is served
    assert (newest.stale, newest.generated_ms) == (False, NOW_MS + FRESH_FOR_S * 1000)
    assert service.figures() is newest


def test_the_request_that_starts_a_slow_reading_waits_only_a_little() -> None:
    now = [NOW_MS / 1000]
    service, views = slow_cockpit(now, wait_for_reading_s=0.05)
    views.gate.set()
    first = service.figures()
    views.gate.clear()
    now[0] += FRESH_FOR_S
    try:
        served = service.figures()
        assert (served.stale, served.generated_ms) == (True, first.generated_ms)
        # The reading still runs: no second one is started meanwhile.
        assert service.figures().reading_since_ms == served.reading_since_ms
    finally:
        views.gate.set()


def test_before_the_first_reading_ends_the_page_gets_figures_marked_pending() -> None:
    now = [NOW_MS / 1000]
    service, views = slow_cockpit(now, wait_for_reading_s=0.05)
    try:
        served = service.figures()
        assert served.stale
        assert (served.reading_since_ms, served.jobs, served.warehouse_error) == (NOW_MS, [], None)
        # Not a reading of zero rows: the page must say it has nothing yet.
        assert served.as_json()["pending"] is True
    finally:
        views.gate.set()
