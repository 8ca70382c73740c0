"""The SQL of the operator page's read model on the BigQuery emulator, against the plain
Python of InMemoryPipelineViews: both answer alike, and as expected, from the same rows."""

from __future__ import annotations

from typing import Any

import pytest

from quotestream.adapters.gcp.bigquery_views import SAMPLE_CHARS, BigQueryPipelineViews
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import DQ_RESULTS, QUOTES, QUOTES_DEAD_LETTER
from quotestream.ports.views import DeadLetterGroup, MinuteCount, PairLatest, PipelineViews
from tests.support.fake_views import InMemoryPipelineViews
from tests.support.fakes import InMemoryWarehouse
from tests.support.local_runs import fresh_warehouse
from tests.support.rows import MINUTE_MS, dead_letter_at, quality_row, quote_at

pytestmark = pytest.mark.integration

NOW = now_ms() // MINUTE_MS * MINUTE_MS - 5 * MINUTE_MS
HOUR_MS = 3_600_000


def dq_row(check: str, pair: str | None, start: int, passed: bool, checked: int) -> dict[str, Any]:
    return quality_row(check, pair, start, passed, f"run-{checked}", checked, f"at {checked}")


QUOTE_ROWS = [
    # Written in two minutes; event -> row 1 s for most, 9 s for the last.
    *[quote_at(NOW - 10 * MINUTE_MS + i, NOW - 10 * MINUTE_MS + i + 1_000) for i in range(4)],
    *[quote_at(NOW + i, NOW + i + 1_000, pair="EUR-USD") for i in range(3)],
    quote_at(NOW + 50, NOW + 9_050, pair="EUR-USD"),
    # Written two hours ago: not in the hour's flow, but its pair's newest quote.
    quote_at(NOW - 2 * HOUR_MS, NOW - 2 * HOUR_MS + 1_000, pair="GBP-USD"),
]
NO_PAYLOAD = {**dead_letter_at(NOW - 3_000, "p0", reason="empty"), "payload": None}
LONG_PAYLOAD = {**dead_letter_at(NOW - 2_000, "p1", reason="too_long"), "payload": "x" * 900}
DEAD_ROWS = [
    dead_letter_at(NOW - 9_000, "m0"),
    {**dead_letter_at(NOW - 1_000, "m1"), "payload": "the newest"},
    NO_PAYLOAD,
    LONG_PAYLOAD,
    dead_letter_at(NOW - 2 * HOUR_MS, "old"),
]
HOUR = NOW - NOW % HOUR_MS - HOUR_MS
DQ_ROWS = [
    dq_row("volume", "USD-BRL", HOUR, False, NOW - 20_000),
    dq_row("volume", "USD-BRL", HOUR, True, NOW - 10_000),  # the rerun that passed
    dq_row("duplicates", None, HOUR, False, NOW - 20_000),
    dq_row("duplicates", None, HOUR - 30 * HOUR_MS, False, NOW - 20_000),  # before `since`
]


def sourced(pair: str, *quotes: tuple[int, str]) -> list[dict[str, Any]]:
    """`pair`'s quotes, each (minutes after NOW, source)."""
    return [
        quote_at(NOW + minutes * MINUTE_MS, pair=pair, source=source) for minutes, source in quotes
    ]


# The extract failing over: one pair back on its primary, one on its secondary, one that never
# switched, and one whose two sources stamped the same moment (ordered by source name then).
SOURCED_ROWS = [
    *sourced("USD-BRL", (-50, "sim"), (-40, "oanda"), (-20, "sim"), (-5, "sim")),
    *sourced(
        "EUR-USD",
        (-90, "sim"),
        (-70, "oanda"),  # a switch before the hour
        (-30, "sim"),
        (-29, "sim"),
        (-18, "oanda"),
        (-10, "oanda"),
        (0, "oanda"),
    ),
    *sourced("GBP-USD", (-45, "sim"), (-15, "sim")),
    *sourced("BTC-USD", (-3, "sim"), (-1, "sim"), (-1, "oanda")),
]


def views_over(prefix: str, rows: dict[str, list[dict[str, Any]]]) -> list[PipelineViews]:
    """The SQL on a new project of the emulator and the fake, both over `rows` per table."""
    _, warehouse = fresh_warehouse(prefix)
    memory = InMemoryWarehouse()
    for table, table_rows in rows.items():
        for store in (warehouse, memory):
            assert store.insert_rows(table, table_rows) == []
    return [BigQueryPipelineViews(warehouse), InMemoryPipelineViews(memory)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def both(bigquery_emulator: ServiceProcess) -> list[PipelineViews]:
    return views_over(
        "views",
        {QUOTES.name: QUOTE_ROWS, QUOTES_DEAD_LETTER.name: DEAD_ROWS, DQ_RESULTS.name: DQ_ROWS},
    )


@pytest.fixture(scope="module")
def switching(bigquery_emulator: ServiceProcess) -> list[PipelineViews]:
    return views_over("sources", {QUOTES.name: SOURCED_ROWS})


def test_rows_per_minute_count_by_the_minute_written(both: list[PipelineViews]) -> None:
    expected = [MinuteCount(NOW - 10 * MINUTE_MS, 4), MinuteCount(NOW, 4)]
    for views in both:
        assert views.rows_per_minute(NOW - HOUR_MS) == expected
        assert views.rows_per_minute(NOW - MINUTE_MS) == expected[1:]


def test_lag_percentiles_of_the_rows_written(both: list[PipelineViews]) -> None:
    for views in both:
        lag = views.lag(NOW - HOUR_MS)
        assert (lag.p50_s, lag.p95_s, lag.rows) == (1.0, 9.0, 8)
        assert views.lag(NOW + HOUR_MS).rows == 0
        assert views.lag(NOW + HOUR_MS).p50_s is None


def test_the_newest_event_of_each_pair(both: list[PipelineViews]) -> None:
    for views in both:
        latest = views.latest_per_pair(NOW - 3 * HOUR_MS, NOW - HOUR_MS)
        assert {pair: quote.newest_ms for pair, quote in latest.items()} == {
            "USD-BRL": NOW - 10 * MINUTE_MS + 3,
            "EUR-USD": NOW + 50,
            "GBP-USD": NOW - 2 * HOUR_MS,
        }
        assert "GBP-USD" not in views.latest_per_pair(NOW - HOUR_MS, NOW - HOUR_MS)


def test_the_active_source_of_each_pair_since_when_and_its_switches_in_the_hour(
    switching: list[PipelineViews],
) -> None:
    at = lambda minutes: NOW + minutes * MINUTE_MS  # noqa: E731
    for views in switching:
        assert views.latest_per_pair(NOW - 3 * HOUR_MS, NOW - HOUR_MS) == {
            "USD-BRL": PairLatest(at(-5), "sim", at(-20), 2),
            "EUR-USD": PairLatest(at(0), "oanda", at(-18), 2),
            "GBP-USD": PairLatest(at(-15), "sim", at(-45), 0),
            "BTC-USD": PairLatest(at(-1), "sim", at(-1), 2),  # sim, oanda, sim
        }
        assert views.latest_per_pair(at(-30), at(-30))["EUR-USD"] == PairLatest(
            at(0), "oanda", at(-18), 1
        )
        # Read from within its oanda run: the run starts with the first quote read.
        assert views.latest_per_pair(at(-15), at(-15))["EUR-USD"] == PairLatest(
            at(0), "oanda", at(-10), 0
        )
        assert views.latest_per_pair(NOW - 3 * HOUR_MS, NOW - 3 * HOUR_MS)["EUR-USD"].switches == 3


def test_dead_letters_grouped_with_their_newest_payload(both: list[PipelineViews]) -> None:
    expected = [
        DeadLetterGroup("malformed_json", "parse", 2, NOW - 1_000, "the newest"),
        DeadLetterGroup("empty", "parse", 1, NOW - 3_000, ""),
        DeadLetterGroup("too_long", "parse", 1, NOW - 2_000, "x" * SAMPLE_CHARS),
    ]
    for views in both:
        assert views.dead_letters_by_reason(NOW - HOUR_MS) == expected


def test_quality_results_keep_the_newest_of_each_check(both: list[PipelineViews]) -> None:
    for views in both:
        results = views.quality_results(HOUR - 24 * HOUR_MS)
        assert [(r.check_name, r.pair, r.passed, r.run_id) for r in results] == [
            ("duplicates", None, False, f"run-{NOW - 20_000}"),
            ("volume", "USD-BRL", True, f"run-{NOW - 10_000}"),
        ]
        assert results[0].interval_start_ms == HOUR
        assert results[0].interval_end_ms == HOUR + HOUR_MS
