"""The streaming health over the in-memory fakes: its figures come from the rows written in
the last window, its staleness from the newest quote of the last day."""

from __future__ import annotations

import pytest

from quotestream.domain.thresholds import AlertThresholds
from quotestream.services.streaming import HealthLimits, SourceWatch, StreamingService
from tests.support.fake_views import InMemoryPipelineViews
from tests.support.fakes import InMemoryHealthQueries, InMemoryJobRunner, InMemoryWarehouse
from tests.support.rows import dead_letter_at, quote_at

pytestmark = pytest.mark.unit

NOW_MS = 1_795_000_000_000
DAY_MS = 86_400_000
LIMITS = HealthLimits(AlertThresholds(dead_letter_window_s=900))


def health(
    warehouse: InMemoryWarehouse, sources: SourceWatch | None = None
) -> tuple[list[str], dict[str, object]]:
    """The report of jobs launched long ago (no grace) over what `warehouse` holds."""
    runner = InMemoryJobRunner()
    service = StreamingService(
        runner,
        InMemoryHealthQueries(warehouse),
        "quotes-load",
        limits=LIMITS,
        clock=lambda: NOW_MS / 1000,
        sources=sources,
    )
    service.ensure_running()
    report = service.health()
    return report.problems, report.figures


def test_the_figures_count_what_was_written_in_the_last_window() -> None:
    warehouse = InMemoryWarehouse()
    recent = [quote_at(NOW_MS - n * 1_000) for n in range(2, 12)]
    written_before_the_window = quote_at(NOW_MS - 1_000_000)
    quotes = [*recent, written_before_the_window]
    warehouse.insert_rows("quotes", quotes, [q["event_id"] for q in quotes])
    dead = [dead_letter_at(NOW_MS - 5_000, "m1"), dead_letter_at(NOW_MS - 1_000_000, "m0")]
    warehouse.insert_rows("quotes_dead_letter", dead, [d["message_id"] for d in dead])

    problems, figures = health(warehouse)

    assert problems == ["dead-letter ratio 9.1% over the last window"]
    assert (figures["loaded_recently"], figures["dead_lettered_recently"]) == (10, 1)
    assert figures["staleness_s"] == 2.0


def test_a_quote_older_than_a_day_is_not_read_so_none_is_loaded_yet() -> None:
    warehouse = InMemoryWarehouse()
    old = quote_at(NOW_MS - DAY_MS - 60_000, ingest_ms=NOW_MS - 1_000)
    warehouse.insert_rows("quotes", [old], [old["event_id"]])

    problems, figures = health(warehouse)

    assert problems == ["no quotes loaded yet"]
    assert (figures["staleness_s"], figures["loaded_recently"]) == (None, 0)


def test_a_pair_on_the_fallback_longer_than_allowed_is_a_problem() -> None:
    warehouse = InMemoryWarehouse()
    on_fallback = [
        {**quote_at(NOW_MS - n * 1_000, pair="EUR-USD"), "source": "oanda"} for n in (700, 5)
    ]
    just_switched = [
        {**quote_at(NOW_MS - 900_000, pair="USD-JPY"), "source": "sim"},
        {**quote_at(NOW_MS - 60_000, pair="USD-JPY"), "source": "oanda"},
    ]
    on_primary = [{**quote_at(NOW_MS - 2_000, pair="USD-BRL"), "source": "sim"}]
    quotes = [*on_fallback, *just_switched, *on_primary]
    warehouse.insert_rows("quotes", quotes, [f"q{n}" for n in range(len(quotes))])

    problems, figures = health(warehouse, SourceWatch(InMemoryPipelineViews(warehouse), "sim"))

    # 600 s allowed (max_on_fallback_s): EUR-USD's 700 s are too long, USD-JPY's minute not.
    assert problems == ["EUR-USD has read oanda, not sim, for 700 s"]
    assert figures["sources"] == {"EUR-USD": "oanda", "USD-BRL": "sim", "USD-JPY": "oanda"}
