"""The API goes down under a running extract job and comes back.

Real parts: the API process (stopped and restarted on its port, by pid), the extract and
load pipelines as DirectRunner processes, the Pub/Sub and BigQuery emulators. What it shows:
extraction retries and logs the outage, keeps its cursor, and after the API returns
publishes the outage window itself (nothing is lost, and the backfill of that window finds
nothing to add); the reconciliation check against the API's history passes for it. The time
before the extract job started is a gap the stream never covered: there the check fails, the
backfill inserts exactly what is missing, and the check passes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from quotestream import bootstrap
from quotestream.adapters.local.processes import (
    ServiceProcess,
    free_port,
    start_api_process,
    start_pipeline_process,
)
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from quotestream.services.quality import DataQualityFailed
from quotestream.settings import Settings
from tests.conftest import REPO
from tests.support.local_runs import provisioned_project
from tests.support.pubsub_tap import Tap

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scenario]

SEED = 9090
PAIRS = ("USD-BRL", "EUR-USD")
OUTAGE_S = 8.0
BEFORE_THE_JOB_MS = 30_000


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_extraction_rides_out_an_api_outage_and_the_backfill_fills_only_real_gaps(
    pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess, logs_dir: Path
) -> None:
    port = free_port()
    api_env = {"QUOTESTREAM_MARKET_SEED": str(SEED), "QUOTESTREAM_PAIRS": ",".join(PAIRS)}
    api_log = logs_dir / f"outage-api-{port}.log"
    settings = provisioned_project("outage", api_url=f"http://127.0.0.1:{port}", pairs=PAIRS)
    tap = Tap(settings.project, settings.quotes_topic)
    job_env = {
        **api_env,
        "QUOTESTREAM_PROJECT": settings.project,
        "QUOTESTREAM_TARGET": "local",
        "QUOTESTREAM_MESSAGE_ORDERING": "false",
        "QUOTESTREAM_API_URL": settings.api_url,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.address,
        "BIGQUERY_EMULATOR_HOST": f"http://{bigquery_emulator.address}",
    }
    apis = [start_api_process(port, api_log, api_env)]
    try:
        down_ms, up_ms, first_ms = ride_out_an_outage(
            settings,
            tap,
            apis,
            lambda: start_api_process(port, api_log, api_env),
            job_env,
            logs_dir,
        )
        quality = bootstrap.build_data_quality_service(settings)
        backfill = bootstrap.build_backfill_service(settings)

        # The outage window: complete without help, and the backfill adds nothing.
        outage = moment(down_ms - 2000), moment(up_ms + 2000)
        assert all(r.passed for r in quality.run(*outage, "outage-before-backfill"))
        assert backfill.run(*outage, "outage").inserted == 0

        # Before the job started: a real gap, which the check sees and the backfill fills.
        gap = moment(first_ms - BEFORE_THE_JOB_MS), moment(up_ms + 2000)
        with pytest.raises(DataQualityFailed) as failed_check:
            quality.run(*gap, "gap-before-backfill")
        failures = failed_check.value.failures
        assert {(f.check_name, f.pair) for f in failures} == {
            (check, pair) for check in ("volume", "reconciliation") for pair in PAIRS
        }
        missing = sum(
            int(f.threshold - f.observed) for f in failures if f.check_name == "reconciliation"
        )
        filled = backfill.run(*gap, "gap")
        assert filled.inserted == missing > 0
        assert all(r.passed for r in quality.run(*gap, "gap-after-backfill"))
        print(f"gap before the job: {missing} missing; {filled}")
    finally:
        for api in apis:
            api.stop()
        tap.close()


def ride_out_an_outage(
    settings: Settings,
    tap: Tap,
    apis: list[ServiceProcess],
    restart_api: Callable[[], ServiceProcess],
    job_env: dict[str, str],
    logs_dir: Path,
) -> tuple[int, int, int]:
    """Extract and load run; the API stops for OUTAGE_S and comes back. Checks what was
    published and logged, waits for the load; returns (down, up, first quote) in ms."""
    extract_log = logs_dir / f"extract-{settings.project}.log"
    jobs = [
        start_pipeline_process(
            REPO, "extract", extract_log, job_env, ["--poll_interval_s=0.5", "--poll_lag_s=1"]
        ),
        start_pipeline_process(REPO, "load", logs_dir / f"load-{settings.project}.log", job_env),
    ]
    try:
        tap.pull_until(tap.reached(now_ms() + 3000, PAIRS), timeout=60)
        apis[-1].stop()
        down_ms = now_ms()
        tap.pull_until(lambda: True, timeout=OUTAGE_S + 10, quiet_s=OUTAGE_S)
        apis.append(restart_api())
        up_ms = now_ms()
        tap.pull_until(tap.reached(up_ms + 4000, PAIRS), timeout=60)
        jobs[0].stop()
        tap.pull_until(lambda: True, timeout=10, quiet_s=2)

        # Each quote once, every tick of the market between the first and the last.
        quotes = [q for q, _ in tap.seen]
        assert len({q.event_id for q in quotes}) == len(quotes), "a quote published twice"
        market = MarketSimulator(SEED, PAIR_CATALOG)
        for pair in PAIRS:
            times = sorted(q.event_ts_ms for q in quotes if q.pair == pair)
            expected = market.quotes_between(PAIR_CATALOG[pair], times[0], times[-1] + 1)
            assert times == [q.event_ts_ms for _, q in expected], f"{pair}: a gap"
        # The outage window was published, and only once the API was back.
        held_back = [
            (q, arrived) for q, arrived in tap.seen if down_ms <= q.event_ts_ms < up_ms - 1000
        ]
        assert held_back, "no quote of the outage window was published"
        assert all(arrived >= up_ms for _, arrived in held_back)

        # The job said so: each pair's fetches failed after retrying, then caught up.
        log = extract_log.read_text()
        failed = re.findall(
            r"([A-Z]+-[A-Z]+): fetch since \S+ failed: .* after (\d+) attempts", log
        )
        assert {pair for pair, _ in failed} == set(PAIRS), log[-3000:]
        back = dict(re.findall(r"([A-Z]+-[A-Z]+): source back after (\d+) failed fetches", log))
        assert set(back) == set(PAIRS), log[-3000:]
        print(
            f"\noutage {(up_ms - down_ms) / 1000:.1f} s; {failed[0][1]} attempts a fetch; "
            f"failed fetches per pair {back}; {len(held_back)} quotes caught up after it"
        )

        # The load delivers what was published.
        warehouse = bootstrap.build_warehouse(settings)
        deadline = time.monotonic() + 60
        while warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"] < len(quotes):
            assert time.monotonic() < deadline, "the load did not deliver what was published"
            time.sleep(1)
    finally:
        for job in jobs:
            job.stop()
    return down_ms, up_ms, min(q.event_ts_ms for q in quotes)
