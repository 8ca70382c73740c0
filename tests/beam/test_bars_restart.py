"""A load job that replaces a dead one goes on with the bars it left, from what BigQuery holds:
every tick of a minute in its bar once, and pane indexes that never repeat.

The earlier job is played by rows written as it would have written them (its quotes, which it
acknowledged, and its panes); the new job is MinuteBarsFn with the BigQuery lookups the load
builds, over the quotes the earlier one had not acknowledged."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any, cast

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from quotestream import bootstrap
from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
from quotestream.adapters.gcp.bigquery_queries import BigQueryStoredRowLookups
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.beam.bars import OneMinuteBars, bar_row_id
from quotestream.domain.quote import Quote, format_ts, make_event_id, now_ms
from quotestream.domain.rows import quote_row
from quotestream.domain.schemas import QUOTE_BARS_1M, QUOTES
from quotestream.ports import Warehouse
from quotestream.ports.queries import StoredBar
from tests.support.fakes import InMemoryStoredRowLookups, InMemoryWarehouse
from tests.support.local_runs import fresh_warehouse
from tests.support.pipelines import direct_pipeline

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
# A minute of a few minutes ago: the earlier job saw it, the new one is born after it.
M = now_ms() // MINUTE_MS * MINUTE_MS - 3 * MINUTE_MS


def born_after_m() -> int:
    """The new job's keys are born 3 minutes after M, however late the test runs (M is
    computed at collection)."""
    return M + 3 * MINUTE_MS


def tick(offset_ms: int, mid: str, pair: str = "USD-BRL") -> Quote:
    ts = M + offset_ms
    value = Decimal(mid)
    base, quote_currency = pair.split("-")
    event_id = make_event_id(pair, ts, "test")
    return Quote(event_id, pair, base, quote_currency, value, value, value, Decimal(0), ts, "test")


def pane(pair: str, ticks: list[Quote], index: int) -> dict[str, Any]:
    """The bar row of the ticks' minute from `ticks` at pane `index`, as the load writes it."""
    mids = [q.mid for q in sorted(ticks, key=lambda q: q.event_ts_ms)]
    start = ticks[0].event_ts_ms // MINUTE_MS * MINUTE_MS
    return {
        "pair": pair,
        "window_start": format_ts(start),
        "window_end": format_ts(start + MINUTE_MS),
        "open": str(mids[0]),
        "high": str(max(mids)),
        "low": str(min(mids)),
        "close": str(mids[-1]),
        "tick_count": len(mids),
        "pane": f"{'ON_TIME' if index == 0 else 'LATE'}:{index}",
        "pane_index": index,
    }


def numeric(row: dict[str, Any]) -> dict[str, Any]:
    # BigQuery hands NUMERIC back without trailing zeros: "5.1" is the stored "5.10".
    return {k: Decimal(v) if k in ("open", "high", "low", "close") else v for k, v in row.items()}


def store(warehouse: Warehouse, quotes: list[Quote], panes: list[dict[str, Any]]) -> None:
    rows = [quote_row(q, q.event_ts_ms + 1_000) for q in quotes]
    assert warehouse.insert_rows(QUOTES.name, rows, [q.event_id for q in quotes]) == []
    assert warehouse.insert_rows(QUOTE_BARS_1M.name, panes, [bar_row_id(p) for p in panes]) == []


def test_a_new_job_continues_the_stored_bars_with_every_tick(
    bigquery_emulator: ServiceProcess,
) -> None:
    settings, warehouse = fresh_warehouse("bars-restart")
    # USD-BRL: the earlier job stored pane 0 of three ticks and their quotes, and had
    # acknowledged the first two when it died.
    acknowledged = [tick(1_000, "5.10"), tick(20_000, "5.30")]
    unacknowledged = tick(30_000, "5.05")
    emitted = [*acknowledged, unacknowledged]
    # EUR-BRL: the minute was still open; its first quote stored and acknowledged.
    open_minute = [tick(5_000, "6.00", "EUR-BRL")]
    store(warehouse, [*emitted, *open_minute], [pane("USD-BRL", emitted, 0)])
    # What the new job gets: the quote not acknowledged, delivered again, and a fresh late
    # one, in either order; EUR-BRL's next quotes.
    fresh = tick(45_000, "5.50")
    eur_rest = [tick(25_000, "6.20", "EUR-BRL"), tick(50_000, "5.90", "EUR-BRL")]

    with direct_pipeline() as pipeline:
        bars = (
            pipeline
            | beam.Create([unacknowledged, fresh, *eur_rest])
            | OneMinuteBars(
                300, partial(bootstrap.build_stored_row_lookups, settings), born_after_m
            )
            | beam.Map(numeric)
        )
        assert_that(
            bars,
            equal_to(
                [
                    numeric(pane("USD-BRL", [*emitted, fresh], 1)),
                    numeric(pane("EUR-BRL", [*open_minute, *eur_rest], 0)),
                ]
            ),
        )


def test_bigquery_and_the_fake_tell_the_same_stored_bars(
    bigquery_emulator: ServiceProcess,
) -> None:
    _, warehouse = fresh_warehouse("stored-bars")
    memory = InMemoryWarehouse()
    ticks = [tick(1_000, "5.10"), tick(59_999, "5.30")]
    lone = tick(-MINUTE_MS, "5.00")
    # Not asked: a minute past the span, another pair.
    others = [tick(2 * MINUTE_MS, "9.00"), tick(2_000, "9.00", "EUR-BRL")]
    # A minute with a pane and no quote (its quotes not written yet when the job died).
    pane_only = pane("USD-BRL", [tick(-2 * MINUTE_MS, "7.00")], 0)
    panes = [pane("USD-BRL", ticks[:1], 0), pane("USD-BRL", ticks, 1), pane_only]
    # A second row of a quote (insert-id dedup is best effort) counts once; so does a second
    # pane 1 that a relaunched load of old wrote: the fuller one is final.
    copy = {**quote_row(ticks[0], M + 9_000)}
    older_pane = {**pane("USD-BRL", ticks[:1], 1), "pane": "ON_TIME:0"}
    # A pane written before panes were numbered: its index is NULL, read as 0.
    unnumbered = {**pane("USD-BRL", [lone], 0), "pane": None, "pane_index": None}
    for target in (warehouse, memory):
        store(target, [*ticks, lone, *others], panes)  # type: ignore[arg-type]
        target.insert_rows(QUOTES.name, [copy], ["copy"])
        target.insert_rows(QUOTE_BARS_1M.name, [older_pane, unnumbered], ["older", "unnumbered"])

    expected = {
        M - 2 * MINUTE_MS: StoredBar({}, pane_index=0, pane_tick_count=1),
        M - MINUTE_MS: StoredBar(
            {lone.event_id: (lone.event_ts_ms, lone.mid)}, pane_index=0, pane_tick_count=1
        ),
        M: StoredBar(
            {q.event_id: (q.event_ts_ms, q.mid) for q in ticks}, pane_index=1, pane_tick_count=2
        ),
    }
    bigquery = BigQueryStoredRowLookups(cast(BigQueryWarehouse, warehouse))
    fake = InMemoryStoredRowLookups(memory)
    for lookups in (bigquery, fake):
        assert lookups.stored_bars("USD-BRL", M - 2 * MINUTE_MS, M + MINUTE_MS) == expected
        assert lookups.stored_bars("USD-BRL", M + 3 * MINUTE_MS, M + 4 * MINUTE_MS) == {}


def test_a_new_job_restates_the_minutes_an_earlier_job_left_short(
    bigquery_emulator: ServiceProcess,
) -> None:
    """Minutes whose quotes the earlier job all stored and acknowledged: none comes again, and
    the new job's first quote (of minute M) restates those a quote may still restate."""
    settings, warehouse = fresh_warehouse("bars-short")
    # Killed before the bar of M-1 was written, and before the late quote of M-2 restated it.
    no_pane = [tick(-MINUTE_MS + 1_000, "5.10"), tick(-MINUTE_MS + 30_000, "5.20")]
    short_pane = [tick(-2 * MINUTE_MS + 1_000, "5.00"), tick(-2 * MINUTE_MS + 2_000, "5.05")]
    whole = [tick(-3 * MINUTE_MS + 1_000, "4.90")]
    too_old = [tick(-6 * MINUTE_MS + 1_000, "4.00")]
    store(
        warehouse,
        [*no_pane, *short_pane, *whole, *too_old],
        [pane("USD-BRL", short_pane[:1], 0), pane("USD-BRL", whole, 0)],
    )
    first = tick(10_000, "5.30")

    with direct_pipeline() as pipeline:
        bars = (
            pipeline
            | beam.Create([first])
            | OneMinuteBars(
                300, partial(bootstrap.build_stored_row_lookups, settings), born_after_m
            )
            | beam.Map(numeric)
        )
        assert_that(
            bars,
            equal_to(
                [
                    numeric(pane("USD-BRL", no_pane, 0)),
                    numeric(pane("USD-BRL", short_pane, 1)),
                    numeric(pane("USD-BRL", [first], 0)),
                ]
            ),
        )
