"""The data-quality checks over the in-memory fakes: which check fails on which data, and
every result recorded in dq_results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quotestream.domain.quote import to_ms
from quotestream.domain.schemas import DQ_RESULTS
from quotestream.domain.thresholds import QualityThresholds
from quotestream.services.quality import DataQualityFailed, DataQualityService
from quotestream.services.quality_checks import CheckResult
from tests.support.builders import quote_dict
from tests.support.fakes import (
    InMemoryQualityQueries,
    InMemoryQuoteSource,
    InMemoryWarehouse,
    ms_of,
)
from tests.support.rows import dead_letter_at, quote_at, unwritten

pytestmark = pytest.mark.unit

PAIRS = ("USD-BRL", "EUR-BRL")
# One tick a second for USD-BRL, one every two for EUR-BRL: their catalogue rates.
TICK_MS = {"USD-BRL": 1_000, "EUR-BRL": 2_000}


@dataclass
class Minute:
    """The minute before last (the freshness check compares with the wall clock), its
    warehouse and the API's history of it."""

    end: datetime = field(
        default_factory=lambda: (
            datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
        )
    )
    warehouse: InMemoryWarehouse = field(default_factory=InMemoryWarehouse)
    source: InMemoryQuoteSource = field(default_factory=InMemoryQuoteSource)
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(minutes=1)

    def ticks(self, pair: str) -> range:
        return range(to_ms(self.start), to_ms(self.end), TICK_MS[pair])

    def load_every_tick(self) -> Minute:
        """Every tick in `quotes`, each written a second after it happened, and served."""
        rows = [quote_at(ms, pair=pair) for pair in PAIRS for ms in self.ticks(pair)]
        self.warehouse.insert_rows("quotes", rows, [row["event_id"] for row in rows])
        self.source.quotes = [quote_dict(p, event_ts_ms=ms) for p in PAIRS for ms in self.ticks(p)]
        return self

    def check(self, run_id: str) -> list[CheckResult]:
        queries = InMemoryQualityQueries(self.warehouse)
        # quote_dict's quotes are of source "test": the API's here.
        service = DataQualityService(
            queries, self.warehouse, self.source, PAIRS, self.thresholds, api_source="test"
        )
        return service.run(self.start, self.end, run_id)

    def failing(self) -> set[tuple[str, str | None]]:
        with pytest.raises(DataQualityFailed) as failed:
            self.check("bad-run")
        return {(failure.check_name, failure.pair) for failure in failed.value.failures}

    def recorded(self, check_name: str, pair: str | None = None) -> dict[str, Any]:
        """The dq_results row of the failed run's `check_name` (of `pair`)."""
        return next(
            row
            for row in self.warehouse.rows(DQ_RESULTS.name)
            if (row["run_id"], row["check_name"], row["pair"]) == ("bad-run", check_name, pair)
        )


def test_every_check_passes_on_the_whole_interval_and_each_result_is_recorded() -> None:
    minute = Minute().load_every_tick()
    results = minute.check("good-run")
    assert all(result.passed for result in results)
    per_pair = ("bars", "price_jump", "reconciliation", "stale_pair", "tick_gaps", "volume")
    # No cross_rate: these two pairs form no triangle.
    assert sorted((r.check_name, r.pair or "") for r in results) == sorted(
        [
            ("bid_le_ask", ""),
            ("dead_letter_ratio", ""),
            ("duplicates", ""),
            ("freshness", ""),
            ("nulls", ""),
            *[(check, pair) for check in per_pair for pair in PAIRS],
        ]
    )
    recorded = minute.warehouse.rows(DQ_RESULTS.name)
    assert {(row["run_id"], row["check_name"], row["pair"]) for row in recorded} == {
        ("good-run", r.check_name, r.pair) for r in results
    }
    volume = {r.pair: r.observed for r in results if r.check_name == "volume"}
    assert volume == {"USD-BRL": 1.0, "EUR-BRL": 1.0}


def test_a_crossed_copy_of_a_quote_fails_bid_le_ask_and_duplicates() -> None:
    minute = Minute().load_every_tick()
    inside = quote_at(to_ms(minute.start) + 30_000)
    crossed = {**inside, "bid": "9.9999", "ask": "1.0000"}
    minute.warehouse.insert_rows("quotes", [crossed], ["planted-crossed"])
    assert minute.failing() == {("bid_le_ask", None), ("duplicates", None)}


def test_a_pair_without_quotes_fails_its_volume_reconciliation_and_staleness() -> None:
    minute = Minute().load_every_tick()
    quotes = minute.warehouse.tables["quotes"]
    for key in [key for key, row in quotes.items() if row["pair"] == "EUR-BRL"]:
        del quotes[key]
    assert minute.failing() == {
        ("volume", "EUR-BRL"),
        ("reconciliation", "EUR-BRL"),
        ("stale_pair", "EUR-BRL"),
    }
    # Behind from the interval's start to USD-BRL's last tick, a second before its end.
    assert minute.recorded("stale_pair", "EUR-BRL")["observed"] == 59.0


def test_reconciliation_leaves_out_the_spans_another_source_served_but_not_a_hole() -> None:
    """USD-BRL's quotes from 00:20 to 00:40 came from OANDA (the API was down), at other instants
    under other event ids: the API's history there is not expected in BigQuery."""
    minute = Minute().load_every_tick()
    start_ms = to_ms(minute.start)
    switch, back = start_ms + 20_000, start_ms + 40_000
    quotes = minute.warehouse.tables["quotes"]
    for key in [key for key, row in quotes.items() if row["pair"] == "USD-BRL"]:
        if switch <= ms_of(quotes[key]["event_ts"]) < back:
            del quotes[key]
    oanda = [quote_at(ms + 400, source="oanda") for ms in range(switch, back, 1_000)]
    minute.warehouse.insert_rows("quotes", oanda, [row["event_id"] for row in oanda])

    reconciled = {r.pair: r for r in minute.check("good-run") if r.check_name == "reconciliation"}
    assert reconciled["USD-BRL"].passed
    assert reconciled["USD-BRL"].details == (
        "40 of the API's in BigQuery, 40 in its history; another source supplied 20 in 1 spans, "
        "left out of both"
    )

    # A hole in the API's stretch is still missing: the API's history has it.
    for key in [key for key, row in quotes.items() if row["pair"] == "USD-BRL"]:
        if ms_of(quotes[key]["event_ts"]) in range(start_ms + 50_000, start_ms + 53_000):
            del quotes[key]
    assert ("reconciliation", "USD-BRL") in minute.failing()
    assert minute.recorded("reconciliation", "USD-BRL")["details"].startswith(
        "37 of the API's in BigQuery, 40 in its history (3 missing)"
    )


def test_a_gap_by_another_source_is_allowed_a_feeds_quiet_but_not_more() -> None:
    """USD-BRL read OANDA from 00:20 to 00:40, which ticked at 00:20.4 and 00:25.4, then was quiet:
    no tick is missing there (a feed has no schedule), but a gap over the limit fails."""
    minute = Minute().load_every_tick()
    start_ms = to_ms(minute.start)
    quotes = minute.warehouse.tables["quotes"]
    for key in [key for key, row in quotes.items() if row["pair"] == "USD-BRL"]:
        if start_ms + 20_000 <= ms_of(quotes[key]["event_ts"]) < start_ms + 40_000:
            del quotes[key]
    oanda = [quote_at(start_ms + ms, source="oanda") for ms in (20_400, 25_400)]
    minute.warehouse.insert_rows("quotes", oanda, [row["event_id"] for row in oanda])

    # Fewer quotes than the API's tick rate (the volume check counts every source's): not
    # what this is about.
    minute.thresholds = QualityThresholds(min_volume_ratio=0.5)
    minute.check("good-run")  # the 14 s to the API's next tick: under 60 s

    minute.thresholds = QualityThresholds(min_volume_ratio=0.5, max_feed_gap_s=10)
    assert minute.failing() == {("tick_gaps", "USD-BRL")}
    assert (
        "0 ticks missing of 42, 1 gaps over 10 s by another source"
        in (minute.recorded("tick_gaps", "USD-BRL")["details"])
    )


def test_a_row_without_ingest_ts_fails_nulls() -> None:
    minute = Minute().load_every_tick()
    quotes = minute.warehouse.tables["quotes"]
    key = next(iter(quotes))
    quotes[key] = unwritten(quotes[key])
    assert minute.failing() == {("nulls", None)}


def test_dead_letters_received_in_the_interval_count_against_the_rows_written_in_it() -> None:
    minute = Minute().load_every_tick()
    received = to_ms(minute.start) + 10_000
    dead = [dead_letter_at(received, f"m{n}") for n in range(5)]
    minute.warehouse.insert_rows("quotes_dead_letter", dead, [row["message_id"] for row in dead])
    assert minute.failing() == {("dead_letter_ratio", None)}
    # 89 of the 90 rows were written inside the interval: USD-BRL's last one a second after.
    assert minute.recorded("dead_letter_ratio")["details"] == "5 dead letters against 89 loaded"


def test_an_empty_warehouse_fails_volume_and_freshness_and_records_no_age() -> None:
    minute = Minute()
    assert minute.failing() == {
        ("volume", "USD-BRL"),
        ("volume", "EUR-BRL"),
        ("freshness", None),
    }
    freshness = minute.recorded("freshness")
    assert (freshness["details"], freshness["observed"]) == ("no quotes at all", None)
