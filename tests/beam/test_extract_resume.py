"""Where a starting extract job resumes each pair (ResumeFrom), with fakes: at the newest
event time `quotes` holds for it, less the overlap, within the look-back."""

from __future__ import annotations

import uuid
from functools import partial

import apache_beam as beam
import pytest

from quotestream.beam.extract import (
    RESUME_RETRY_MS,
    TOLD_APART_MS,
    ExtractQuotes,
    ResumeFrom,
    ResumeUnknown,
)
from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import format_ts
from tests.support.fakes import (
    InMemoryResumePoints,
    InMemoryWarehouse,
    shared_publisher,
    shared_resume_points,
)
from tests.support.pipelines import StepClock, direct_pipeline
from tests.support.simulated_source import SimulatedSource, windows_asked

pytestmark = pytest.mark.unit

NOW = 1_795_000_000_000
HOUR = 3_600_000
SEED = 31


def stored(
    times: dict[str, list[int]],
    warehouse: InMemoryWarehouse | None = None,
    source: str = "sim",
) -> InMemoryResumePoints:
    """Resume points over a `quotes` table holding these event times per pair, of `source`."""
    warehouse = warehouse or InMemoryWarehouse()
    rows = [
        {"pair": p, "event_ts": format_ts(t), "source": source}
        for p, ts in times.items()
        for t in ts
    ]
    warehouse.insert_rows("quotes", rows)
    return InMemoryResumePoints(warehouse)


def resume_from(points: InMemoryResumePoints | None, *fallback: str) -> ResumeFrom:
    return ResumeFrom(
        (lambda: points) if points is not None else None,
        sources=["sim", *fallback],
        max_lookback_ms=HOUR,
        overlap_ms=60_000,
        first_lookback_ms=5_000,
    )


def test_a_pair_resumes_at_its_newest_stored_quote_less_the_overlap() -> None:
    points = stored({"USD-BRL": [NOW - 600_000, NOW - 300_000]})
    assert resume_from(points).start("USD-BRL", NOW) == NOW - 300_000 - 60_000


def test_a_pair_the_fallback_served_last_resumes_after_it_not_an_overlap_back() -> None:
    """The primary's quotes of an instant the stream served would store it from two sources."""
    points = stored({"USD-BRL": [NOW - 600_000], "EUR-USD": [NOW - 100_000]})
    stored({"USD-BRL": [NOW - 590_000, NOW - 580_000]}, points.warehouse, source="oanda")
    stored({"EUR-USD": [NOW - 300_000]}, points.warehouse, source="oanda")
    resume = resume_from(points, "oanda")

    assert resume.start("USD-BRL", NOW) == NOW - 580_000 + 1
    # Back on the primary since: its overlap, the fallback's older quotes no matter.
    assert resume.start("EUR-USD", NOW) == NOW - 100_000 - 60_000
    assert resume_from(stored({}, source="oanda"), "oanda").start("GBP-USD", NOW) == NOW - 5_000


def test_the_look_back_bounds_the_resume_and_older_gaps_are_the_backfills() -> None:
    points = stored(
        {
            "USD-BRL": [NOW - HOUR + 30_000],  # within the look-back, but not its overlap
            "EUR-USD": [NOW - 2 * HOUR],  # beyond it: as a new pair
        }
    )
    resume = resume_from(points)
    assert resume.start("USD-BRL", NOW) == NOW - HOUR
    assert resume.start("EUR-USD", NOW) == NOW - 5_000
    assert resume.start("BTC-USD", NOW) == NOW - 5_000  # nothing stored
    # The look-back's partitions, and a day more to tell EUR-USD from a new pair.
    assert points.reads == [NOW - HOUR - TOLD_APART_MS]


def test_a_pair_stored_only_before_the_look_back_starts_anew_and_says_the_gap_is_the_backfills(
    caplog: pytest.LogCaptureFixture,
) -> None:
    points = stored({"EUR-USD": [NOW - 2 * HOUR]})
    with caplog.at_level("WARNING", logger="quotestream.beam.extract"):
        assert resume_from(points).start("EUR-USD", NOW) == NOW - 5_000
        assert resume_from(points).start("BTC-USD", NOW) == NOW - 5_000
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1, warned
    assert "EUR-USD" in warned[0]
    assert "older than the look-back" in warned[0]
    assert "backfill" in warned[0]


def test_the_resume_point_is_the_extracts_own_sources_newest_quote() -> None:
    """Quotes another source pushed (POST /v1/quotes) or a backfill stored, newer than what
    the extract fetched, do not move its resume point past a gap of its own."""
    warehouse = InMemoryWarehouse()
    stored({"USD-BRL": [NOW - 600_000]}, warehouse)
    points = stored({"USD-BRL": [NOW - 10_000]}, warehouse, source="relay")
    assert resume_from(points).start("USD-BRL", NOW) == NOW - 600_000 - 60_000


def test_pairs_starting_together_share_one_read() -> None:
    points = stored({"USD-BRL": [NOW - 10_000]})
    resume = resume_from(points)
    for offset, pair in enumerate(["USD-BRL", "EUR-USD", "BTC-USD"]):
        resume.start(pair, NOW + offset * 1000)
    assert len(points.reads) == 1
    resume.start("GBP-USD", NOW + 61_000)
    assert len(points.reads) == 2


def test_without_a_warehouse_every_pair_starts_the_first_look_back_back() -> None:
    assert resume_from(None).start("USD-BRL", NOW) == NOW - 5_000


def test_no_pair_is_fetched_from_a_guess_while_the_stored_quotes_cannot_be_read() -> None:
    points = stored({"USD-BRL": [NOW - 100_000]})
    points.failing = True
    resume = resume_from(points)
    with pytest.raises(ResumeUnknown):
        resume.start("USD-BRL", NOW)
    assert resume.start("USD-BRL", NOW + 1000) is None, "asked again before the retry"
    assert len(points.reads) == 1
    points.failing = False
    assert resume.start("USD-BRL", NOW + RESUME_RETRY_MS) == NOW - 100_000 - 60_000


def test_a_relaunched_job_publishes_from_each_pairs_stored_quotes_on_without_a_gap() -> None:
    """The previous job stored USD-BRL up to 10 minutes ago; this job (empty state) fetches
    from there less the overlap on, every tick once, an overlap at most a fetch (a cancel
    during a fetch leaves no hole older than the overlap); EUR-USD had nothing stored."""
    name = f"resume-{uuid.uuid4()}"
    market = MarketSimulator(SEED, PAIR_CATALOG)
    stored_ms = [
        q.event_ts_ms
        for _, q in market.quotes_between(PAIR_CATALOG["USD-BRL"], NOW - 900_000, NOW - 600_000)
    ]
    stored({"USD-BRL": stored_ms}, shared_resume_points(name).warehouse)
    with direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(range(16))
            | ExtractQuotes(
                ["USD-BRL", "EUR-USD"],
                partial(SimulatedSource, seed=SEED, name=name),
                partial(shared_publisher, name),
                "quotes",
                lag_ms=0,
                first_lookback_ms=5_000,
                clock=StepClock(name, NOW),
                resume_points=partial(shared_resume_points, name),
                max_lookback_ms=HOUR,
                resume_overlap_ms=60_000,
            )
        )
    quotes = [
        parse_quote(m.data, m.attributes, now_ms=NOW + HOUR)
        for m in shared_publisher(name).messages
    ]
    assert len({q.event_id for q in quotes}) == len(quotes), "a quote published twice"
    assert len(shared_resume_points(name).reads) == 1
    windows = windows_asked(name)
    assert max(end - start for _, start, end in windows) <= 60_000, "a fetch beyond the overlap"
    last_ms = max(q.event_ts_ms for q in quotes)
    for pair in ("USD-BRL", "EUR-USD"):
        times = sorted(q.event_ts_ms for q in quotes if q.pair == pair)
        expected = [
            q.event_ts_ms
            for _, q in market.quotes_between(PAIR_CATALOG[pair], times[0], times[-1] + 1)
        ]
        assert times == expected, f"{pair}: a gap"
        assert times[-1] >= last_ms - 2_000
    usd_brl = min(q.event_ts_ms for q in quotes if q.pair == "USD-BRL")
    first_after = next(
        iter(market.quotes_between(PAIR_CATALOG["USD-BRL"], stored_ms[-1] - 60_000, NOW))
    )
    assert usd_brl == first_after[1].event_ts_ms, "USD-BRL did not resume at its stored quotes"
    # A pair with nothing stored starts 5 s before its first tick's clock reading (one of
    # the ten readings NOW + k s, k < 10).
    eur_usd = min(q.event_ts_ms for q in quotes if q.pair == "EUR-USD")
    assert NOW - 5_000 <= eur_usd < NOW + 5_000 + PAIR_CATALOG["EUR-USD"].tick_interval_ms
    # The overlap re-fetched what was stored: the load stores it once (by event id).
    assert sum(1 for q in quotes if q.pair == "USD-BRL" and q.event_ts_ms in set(stored_ms)) > 0
