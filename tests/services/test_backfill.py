"""Backfill over the in-memory fakes: only what `quotes` lacks is inserted, once; what the
gate refuses is dead-lettered; the scratch table does not outlive the run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quotestream.domain.quote import to_ms
from quotestream.services.backfill import BackfillService
from tests.support.builders import quote_dict
from tests.support.fakes import InMemoryBackfillWrites, InMemoryQuoteSource, InMemoryWarehouse
from tests.support.rows import quote_at

pytestmark = pytest.mark.unit

PAIRS = ("USD-BRL", "EUR-BRL")
END = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
START = END - timedelta(minutes=5)


def backfill(warehouse: InMemoryWarehouse, source: InMemoryQuoteSource) -> BackfillService:
    # quote_dict's quotes are of source "test": the API's here.
    return BackfillService(source, warehouse, InMemoryBackfillWrites(warehouse), PAIRS, "test")


def served() -> list[dict[str, str]]:
    """The API's history of the interval: a quote every ten seconds of each pair."""
    ticks = range(to_ms(START), to_ms(END), 10_000)
    return [quote_dict(pair, event_ts_ms=ms) for pair in PAIRS for ms in ticks]


def test_backfilling_an_interval_twice_inserts_only_what_is_missing_once() -> None:
    history = served()
    warehouse = InMemoryWarehouse()
    # The streaming load already wrote some of the interval, and a quote after it.
    streamed = [quote_at(to_ms(START) + n * 10_000) for n in range(0, 30, 7)]
    after = quote_at(to_ms(END) + 5_000)
    warehouse.insert_rows("quotes", [*streamed, after], [q["event_id"] for q in [*streamed, after]])

    first = backfill(warehouse, InMemoryQuoteSource(history)).run(START, END, "run-1")
    second = backfill(warehouse, InMemoryQuoteSource(history)).run(START, END, "run-2")

    assert (first.fetched, first.inserted, first.dead_lettered) == (len(history), 55, 0)
    assert (second.fetched, second.inserted) == (len(history), 0)
    assert "0 left out" in str(second)
    stored = sorted(row["event_id"] for row in warehouse.rows("quotes"))
    assert stored == sorted([*(q["event_id"] for q in history), after["event_id"]])
    assert set(warehouse.tables) == {"quotes"}


def test_what_the_gate_refuses_is_dead_lettered_once_and_the_rest_inserted() -> None:
    crossed = quote_dict("USD-BRL", bid="5.3600", ask="5.3500", event_ts_ms=to_ms(START) + 1_000)
    history = [*served(), crossed]
    warehouse = InMemoryWarehouse()

    result = backfill(warehouse, InMemoryQuoteSource(history)).run(START, END, "run-1")
    backfill(warehouse, InMemoryQuoteSource(history)).run(START, END, "run-2")

    assert (result.fetched, result.inserted, result.dead_lettered) == (61, 60, 1)
    [dead] = warehouse.rows("quotes_dead_letter")
    assert (dead["stage"], dead["reason"]) == ("backfill", "crossed_market")
    assert dead["attributes"] == [{"key": "backfill", "value": "run-1"}]


def test_an_interval_a_month_old_is_backfilled_whole() -> None:
    """The live load's freshness horizon does not apply: the backfill exists for history."""
    month_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    start, end = month_ago, month_ago + timedelta(minutes=5)
    history = [
        quote_dict(pair, event_ts_ms=ms)
        for pair in PAIRS
        for ms in range(to_ms(start), to_ms(end), 10_000)
    ]
    warehouse = InMemoryWarehouse()

    result = backfill(warehouse, InMemoryQuoteSource(history)).run(start, end, "month-old")

    assert (result.fetched, result.inserted, result.dead_lettered) == (len(history), 60, 0)
    assert sorted(row["event_id"] for row in warehouse.rows("quotes")) == sorted(
        q["event_id"] for q in history
    )


def test_an_interval_must_be_aware_and_not_empty() -> None:
    service = backfill(InMemoryWarehouse(), InMemoryQuoteSource())
    with pytest.raises(ValueError, match="start < end"):
        service.run(END, START, "backwards")
    with pytest.raises(ValueError, match="aware interval"):
        service.run(START.replace(tzinfo=None), END, "naive")


def test_the_spans_another_source_served_are_left_to_it_and_a_hole_elsewhere_is_filled() -> None:
    """USD-BRL: stored from the API, but for a run of OANDA's quotes between 01:00 and 02:00 (the
    API was down) and a hole between 03:00 and 03:30. The API's history of the run's span is
    left out: those instants are stored once, from OANDA."""
    history = served()
    start_ms = to_ms(START)
    switch, back = start_ms + 60_000, start_ms + 120_000
    hole = range(start_ms + 180_000, start_ms + 210_000)
    oanda = [quote_at(ms + 250, source="oanda") for ms in range(switch, back, 5_000)]
    stored = [
        quote_at(ms, source="test")
        for ms in range(start_ms, to_ms(END), 10_000)
        if not switch <= ms < back and ms not in hole
    ]
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows("quotes", [*stored, *oanda], [q["event_id"] for q in [*stored, *oanda]])

    first = backfill(warehouse, InMemoryQuoteSource(history)).run(START, END, "run-1")
    second = backfill(warehouse, InMemoryQuoteSource(history)).run(START, END, "run-2")

    usd_brl_hole = [q for q in history if q["pair"] == "USD-BRL" and ms_at(q) in hole]
    in_the_span = [q for q in history if q["pair"] == "USD-BRL" and switch <= ms_at(q) < back]
    # EUR-BRL had nothing stored: its whole history, USD-BRL's hole.
    assert first.inserted == 30 + len(usd_brl_hole)
    assert (first.served_elsewhere, second.served_elsewhere) == (len(in_the_span),) * 2
    assert second.inserted == 0
    assert f"{len(in_the_span)} left out (another source served their spans)" in str(first)
    ids = {row["event_id"] for row in warehouse.rows("quotes")}
    assert {q["event_id"] for q in usd_brl_hole} <= ids
    assert not {q["event_id"] for q in in_the_span} & ids


def ms_at(quote: dict[str, str]) -> int:
    return to_ms(datetime.fromisoformat(quote["event_ts"]))
