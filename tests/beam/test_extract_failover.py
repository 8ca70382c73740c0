"""The primary source (the API) is killed under a running extract whose fallback is OANDA's
pricing stream, and comes back: the pairs switch to the stream within the configured time,
and back once the API answers, and the Quotes pipeline page shows each pair's source; every
quote is stored once, with its source, and no instant from both.

Real parts: the API process (killed by pid and restarted on its port), the OANDA stand-in
(tests/support/standins/oanda.py), the extract and load jobs (DirectRunner processes of the
local job runner), the Pub/Sub and BigQuery emulators.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.adapters.local.processes import free_port, start_api_process
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from quotestream.ports.jobs import StopMode
from quotestream.services.cockpit import CockpitService
from quotestream.services.quality import DataQualityFailed, DataQualityService
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from tests.support.local_runs import wait_until
from tests.support.pubsub_tap import Tap
from tests.support.standins.oanda import OandaStandIn

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.scenario]

SEED = 4242
TOKEN = "stand-in-token-0123456789"
ACCOUNT = "101-004-0000000-003"
PAIRS = ("EUR-USD", "USD-JPY")
FAILOVER_AFTER_S, PROBE_S = 4, 4
PATIENCE_S = 300
EXTRACT, LOAD = JOB_NAMES["extract"], JOB_NAMES["load"]


def test_a_killed_primary_hands_over_to_the_stream_and_takes_back_when_it_returns(
    job_target: Any, logs_dir: Path
) -> None:
    port = free_port()
    api_env = {"QUOTESTREAM_MARKET_SEED": str(SEED), "QUOTESTREAM_PAIRS": ",".join(PAIRS)}
    api_log = logs_dir / f"failover-api-{port}.log"
    api = start_api_process(port, api_log, api_env)
    feed = OandaStandIn(TOKEN, ACCOUNT, [[]], price_every_s=0.25).start()
    try:
        settings: Settings = job_target(
            "failover",
            QUOTESTREAM_API_URL=f"http://127.0.0.1:{port}",
            QUOTESTREAM_MARKET_SEED=str(SEED),
            QUOTESTREAM_PAIRS=",".join(PAIRS),
            QUOTESTREAM_EXTRACT_FALLBACK_SOURCE="oanda",
            QUOTESTREAM_EXTRACT_FAILOVER_AFTER_S=str(FAILOVER_AFTER_S),
            QUOTESTREAM_EXTRACT_FAILBACK_PROBE_S=str(PROBE_S),
            **feed.env(),
            # The streaming verdict (what quotestream_streaming alerts on) holds a pair on
            # the fallback against the pipeline from 2 s on.
            QUOTESTREAM_ALERT_THRESHOLDS='{"max_on_fallback_s": 2}',
        )
        runner = bootstrap.build_job_runner(settings)
        warehouse = bootstrap.build_warehouse(settings)
        tap = Tap(settings.project, settings.quotes_topic)
        # One service, as the page keeps one: a reading outlasts a request's wait for it.
        cockpit = bootstrap.build_cockpit_service(settings)

        def stored(source: str, since_ms: int) -> set[str]:
            """The pairs with a quote of `source` at or after `since_ms`."""
            rows = warehouse.query(
                "SELECT DISTINCT pair FROM {dataset}.quotes "
                "WHERE source = @source AND event_ts >= TIMESTAMP_MILLIS(@since)",
                {"source": source, "since": since_ms},
            )
            return {row["pair"] for row in rows}

        try:
            runner.launch(LOAD, "load", [])
            runner.launch(EXTRACT, "extract", [])
            wait_until(lambda: stored("sim", 0) == set(PAIRS), PATIENCE_S, "the API's quotes")
            api.stop()
            down_ms = now_ms()
            wait_until(
                lambda: stored("oanda", down_ms) == set(PAIRS), PATIENCE_S, "the stream's quotes"
            )
            stored_after_s = (now_ms() - down_ms) / 1000
            on_the_stream = dict.fromkeys(PAIRS, ("oanda", 1))
            wait_until(lambda: page_sources(cockpit) == on_the_stream, PATIENCE_S, "the page")
            wait_until(lambda: verdict_names(settings) == set(PAIRS), PATIENCE_S, "the verdict")
            api = start_api_process(port, api_log, api_env)
            up_ms = now_ms()
            wait_until(
                lambda: stored("sim", up_ms) == set(PAIRS), PATIENCE_S, "the API's quotes again"
            )
            back_ms = now_ms()
            back = dict.fromkeys(PAIRS, ("sim", 2))
            wait_until(lambda: page_sources(cockpit) == back, PATIENCE_S, "the page, again")
            assert verdict_names(settings) == set()
            runner.stop(EXTRACT, StopMode.CANCEL)
            wait_until(lambda: runner.find(EXTRACT).state.terminal, PATIENCE_S, "the cancel")
            tap.pull_until(lambda: True, timeout=PATIENCE_S, quiet_s=3)
            published = {q.event_id for q, _ in tap.seen}
            wait_until(lambda: stored_ids(warehouse) >= published, PATIENCE_S, "the load")
        finally:
            runner.stop(EXTRACT, StopMode.CANCEL)
            runner.stop(LOAD, StopMode.CANCEL)
            tap.close()
            cockpit.close()

        rows = warehouse.query(
            "SELECT pair, event_id, source, UNIX_MILLIS(event_ts) AS t FROM {dataset}.quotes "
            "ORDER BY pair, t"
        )
        assert len({r["event_id"] for r in rows}) == len(rows), "a quote stored twice"
        assert {r["event_id"] for r in rows} == published
        market = MarketSimulator(SEED, PAIR_CATALOG)
        log = extract_log(settings)
        waited: dict[str, float] = {}
        for pair in PAIRS:
            of_pair = [r for r in rows if r["pair"] == pair]
            runs = [
                r["source"]
                for i, r in enumerate(of_pair)
                if i == 0 or r["source"] != of_pair[i - 1]["source"]
            ]
            assert runs == ["sim", "oanda", "sim"], f"{pair}: sources in turn {runs}"
            feed_times = [r["t"] for r in of_pair if r["source"] == "oanda"]
            # No instant from both: the API's quotes stop before the stream's start, and start
            # again after they end.
            api_times = [r["t"] for r in of_pair if r["source"] == "sim"]
            assert not [t for t in api_times if feed_times[0] <= t <= feed_times[-1]]
            # Each of the API's stretches is every tick of its market, none missing.
            for stretch in (
                [t for t in api_times if t < feed_times[0]],
                [t for t in api_times if t > feed_times[-1]],
            ):
                expected = market.quotes_between(PAIR_CATALOG[pair], stretch[0], stretch[-1] + 1)
                assert stretch == [q.event_ts_ms for _, q in expected], f"{pair}: a gap"
            switched = re.search(
                rf"{pair}: switched from sim to oanda: sim failing: .* for ([\d.]+) s", log
            )
            assert switched, log[-3000:]
            waited[pair] = float(switched[1])
            assert re.search(rf"{pair}: switched from oanda to sim: sim answers again", log)
        # Switched at the first poll after the failover time (a failing fetch takes its retries,
        # about 2 s): the margin is for a busy machine's slow polls.
        assert max(waited.values()) <= FAILOVER_AFTER_S + 10, waited
        # The checks stay meaningful over the switches: each pair's interval from its second
        # stored quote to its last reconciles with no backfill (the stream's span left to it),
        # no gap beyond what each source allows, no quote twice; the backfill adds nothing.
        start_ms = max(sorted(r["t"] for r in rows if r["pair"] == pair)[1] for pair in PAIRS)
        end_ms = min(max(r["t"] for r in rows if r["pair"] == pair) for pair in PAIRS)
        interval = moment(start_ms), moment(end_ms)
        failing = failing_checks(bootstrap.build_data_quality_service(settings), interval)
        meant = ("reconciliation", "tick_gaps", "duplicates", "volume")
        assert not [failure for failure in failing if failure.startswith(meant)], failing
        filled = bootstrap.build_backfill_service(settings).run(*interval, "failover")
        assert filled.inserted == 0, str(filled)
        assert filled.served_elsewhere > 0, str(filled)
        print(
            f"\nfailover: switched after the API failed for {waited} s (failover after "
            f"{FAILOVER_AFTER_S} s), the stream's quotes stored within {stored_after_s:.1f} s of "
            f"the kill; back on the API within "
            f"{(back_ms - up_ms) / 1000:.1f} s of its return (probe every {PROBE_S} s); "
            f"{len(rows)} quotes, {sum(r['source'] == 'oanda' for r in rows)} from the stream; "
            f"{filled}"
        )
    finally:
        api.stop()
        feed.stop()


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def failing_checks(quality: DataQualityService, interval: tuple[datetime, datetime]) -> set[str]:
    """The checks that fail for some pair of the interval (the others passed)."""
    try:
        quality.run(*interval, "failover", check_freshness=False)
    except DataQualityFailed as failed:
        return {f"{result.check_name}: {result}" for result in failed.failures}
    return set()


def page_sources(cockpit: CockpitService) -> dict[str, tuple[str | None, int]]:
    """What the Quotes pipeline page shows per pair: its active source and its switches in
    the hour (nothing while a reading runs)."""
    figures = cockpit.figures()
    if figures.pending or figures.stale:
        return {}
    return {row.pair: (row.source, row.source_switches) for row in figures.freshness}


def verdict_names(settings: Settings) -> set[str]:
    """The pairs the streaming verdict finds on the fallback for too long."""
    problems = bootstrap.build_streaming_service(settings).health().problems
    return {pair for pair in PAIRS for p in problems if p.startswith(f"{pair} has read oanda")}


def extract_log(settings: Settings) -> str:
    path = Path(settings.local_state_dir) / "logs" / f"job-{EXTRACT}.log"
    return path.read_text(errors="replace")


def stored_ids(warehouse: Any) -> set[str]:
    return {row["event_id"] for row in warehouse.query("SELECT event_id FROM {dataset}.quotes")}
