"""The extract is cancelled, stays down over two minutes, and is launched again, as the local
job runner does it for `quotestream_restart`: each pair resumes at the newest quote `quotes`
holds, so the interval reconciles with the API's history with no backfill, every quote
stored once.

Real parts: the API process, the extract and load jobs (DirectRunner processes of the local
job runner), the Pub/Sub and BigQuery emulators.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from quotestream.ports.jobs import StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from tests.conftest import SEED
from tests.support.local_runs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scenario]

PAIRS = ("USD-BRL", "EUR-USD")
GAP_S = 120
# Every wait is for a condition: a busy machine (two cores, three test workers) may take
# minutes to start a DirectRunner process.
PATIENCE_S = 300
EXTRACT, LOAD = JOB_NAMES["extract"], JOB_NAMES["load"]


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_a_relaunch_after_two_minutes_down_loses_nothing_and_needs_no_backfill(
    job_target: Any, api_url: str
) -> None:
    settings: Settings = job_target(
        "relaunch", QUOTESTREAM_API_URL=api_url, QUOTESTREAM_PAIRS=",".join(PAIRS)
    )
    runner = bootstrap.build_job_runner(settings)
    warehouse = bootstrap.build_warehouse(settings)
    resume_points = bootstrap.build_resume_points(settings)
    market = MarketSimulator(SEED, PAIR_CATALOG)

    def newest() -> dict[str, int]:
        return resume_points.newest_event_per_pair(now_ms() - 3_600_000, settings.quote_source)

    def stored_up_to(moment_ms: int) -> bool:
        return all(newest().get(pair, 0) >= moment_ms for pair in PAIRS)

    def stored_in(start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        return warehouse.query(
            "SELECT pair, event_id, UNIX_MILLIS(event_ts) AS t FROM {dataset}.quotes "
            "WHERE event_ts >= TIMESTAMP_MILLIS(@start) AND event_ts < TIMESTAMP_MILLIS(@end)",
            {"start": start_ms, "end": end_ms},
        )

    try:
        runner.launch(LOAD, "load", [])
        first = runner.launch(EXTRACT, "extract", [])
        # Anchored to what is stored, not to the clock: the first job may start late.
        wait_until(lambda: set(newest()) >= set(PAIRS), PATIENCE_S, "the first job's quotes")
        first_ms = max(newest()[pair] for pair in PAIRS) + 15_000
        wait_until(lambda: stored_up_to(first_ms), PATIENCE_S, "15 s more of quotes stored")
        runner.stop(EXTRACT, StopMode.CANCEL)
        cancelled_ms = now_ms()
        wait_until(lambda: runner.find(EXTRACT).state.terminal, PATIENCE_S, "the cancel to show")
        # The gap is what is tested: the market moves on with no extract for two minutes.
        time.sleep(max(0.0, cancelled_ms / 1000 + GAP_S - time.time()))
        relaunched_ms = now_ms()
        second = runner.launch(EXTRACT, "extract", [])
        wait_until(
            lambda: stored_up_to(relaunched_ms + 3000), PATIENCE_S, "the relaunched job's quotes"
        )
        caught_up_s = (now_ms() - relaunched_ms) / 1000

        # [the first job's first second on, a little after the relaunch): every tick of the
        # market, each stored once.
        rows = stored_in(0, relaunched_ms + 3000)
        start_ms = max(min(r["t"] for r in rows if r["pair"] == pair) for pair in PAIRS) + 1000
        end_ms = relaunched_ms + 3000
        expected = {
            q.event_id: q.event_ts_ms
            for pair in PAIRS
            for _, q in market.quotes_between(PAIR_CATALOG[pair], start_ms, end_ms)
        }
        wait_until(
            lambda: {r["event_id"] for r in stored_in(start_ms, end_ms)} >= set(expected),
            PATIENCE_S,
            "every quote of the interval to be stored",
        )
    finally:
        runner.stop(EXTRACT, StopMode.CANCEL)
        runner.stop(LOAD, StopMode.CANCEL)

    rows = stored_in(start_ms, end_ms)
    ids = [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a quote stored twice"
    assert set(ids) == set(expected), "stored quotes differ from the market's ticks"
    # The first stored quotes were at least 15 s older than the newest at the cancel.
    assert start_ms < cancelled_ms - 10_000, "the interval does not reach back before the cancel"

    # The relaunched job said where each pair resumed: before the cancel, not 5 s back.
    log = Path(second.detail).read_text(errors="replace")
    assert second.job_id != first.job_id
    starts = dict(re.findall(r"([A-Z]+-[A-Z]+): starts at (\S+)", log)[-len(PAIRS) :])
    assert set(starts) == set(PAIRS), log[-3000:]
    for pair, text in starts.items():
        resumed_ms = int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
        assert resumed_ms < cancelled_ms, f"{pair} resumed at {text}, after the cancel"

    # The reconciliation with the API's history (and every other check) passes, no backfill.
    quality = bootstrap.build_data_quality_service(settings)
    results = quality.run(moment(start_ms), moment(end_ms), "relaunch")
    assert {r.check_name for r in results} >= {"reconciliation", "duplicates"}
    gap_quotes = sum(1 for t in expected.values() if cancelled_ms <= t < relaunched_ms)
    print(
        f"\ndown {(relaunched_ms - cancelled_ms) / 1000:.1f} s; {gap_quotes} quotes of the gap "
        f"caught up {caught_up_s:.1f} s after the relaunch; {len(ids)} quotes in "
        f"{(end_ms - start_ms) / 1000:.0f} s, each once; resumed at {starts}"
    )
