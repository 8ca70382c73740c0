"""The DAGs run for real against the local stack: emulators, the API process, DirectRunner
jobs. `dag.test()` is what `airflow dags test` runs, in this process; provisioning goes
through the `airflow dags test` command itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import to_ms
from quotestream.domain.rows import quote_row
from quotestream.ports.jobs import StopMode
from quotestream.settings import Settings
from tests.conftest import SEED
from tests.support.dag_runs import states
from tests.support.local_runs import wait_until
from tests.support.webhook import Webhook, serving

pytestmark = pytest.mark.integration

PAIRS = "USD-BRL,EUR-USD"


@pytest.fixture
def local_target(
    monkeypatch: pytest.MonkeyPatch,
    pubsub_emulator: ServiceProcess,
    bigquery_emulator: ServiceProcess,
    api_url: str,
    state_dir: Path,
) -> Settings:
    """The environment a Composer worker would have, pointed at the local stack."""
    for key, value in {
        "QUOTESTREAM_TARGET": "local",
        "QUOTESTREAM_PROJECT": f"dags-{uuid.uuid4().hex[:8]}",
        "QUOTESTREAM_MESSAGE_ORDERING": "false",
        "QUOTESTREAM_LOCAL_STATE_DIR": str(state_dir),
        "QUOTESTREAM_API_URL": api_url,
        "QUOTESTREAM_PAIRS": PAIRS,
        "QUOTESTREAM_MARKET_SEED": str(SEED),
    }.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_provision_through_the_airflow_cli(airflow_db: None, local_target: Settings) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", "quotestream_provision"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tables = bootstrap.build_warehouse(local_target).query(
        "SELECT table_name FROM {dataset}.INFORMATION_SCHEMA.TABLES ORDER BY table_name"
    )
    assert [t["table_name"] for t in tables] == [
        "dead_letter_replays",
        "dq_results",
        "quote_bars_1m",
        "quotes",
        "quotes_dead_letter",
    ]


def test_streaming_launches_once_stays_healthy_and_restart_loses_nothing(
    dagbag: Any, local_target: Settings
) -> None:
    bootstrap.build_provision_service(local_target).run()
    runner = bootstrap.build_job_runner(local_target)
    warehouse = bootstrap.build_warehouse(local_target)
    try:
        first = dagbag.get_dag("quotestream_streaming").test()
        assert states(first)["ensure_running"] == "success"
        jobs = {name: runner.find(name) for name in ("quotestream-extract", "quotestream-load")}
        assert all(job and job.state == "running" for job in jobs.values()), jobs

        def loaded() -> int:
            return int(warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"])

        wait_until(lambda: loaded() > 20, 120, "the first quotes to be loaded", poll_s=1.0)
        second = dagbag.get_dag("quotestream_streaming").test()
        assert states(second) == {
            "ensure_running": "success",
            "measure_health": "success",
            "alert_if_unhealthy": "success",
        }
        assert {name: runner.find(name).job_id for name in jobs} == {
            name: job.job_id for name, job in jobs.items()
        }, "a second copy was launched"

        # Messages published while the load job is being replaced wait in the subscription.
        market = MarketSimulator(99, PAIR_CATALOG, source="restart-test")
        now = to_ms(datetime.now(UTC))
        batch = [
            q
            for _, q in market.quotes_between(PAIR_CATALOG["EUR-USD"], now - 300_000, now - 240_000)
        ]
        publisher = PublisherClient()
        topic = publisher.topic_path(local_target.project, local_target.quotes_topic)
        old_load = jobs["quotestream-load"].job_id
        published: list[str] = []

        def replaced() -> bool:
            job = runner.find("quotestream-load")
            return job.job_id != old_load or job.state != "running"

        def publish_once_stopped() -> None:
            wait_until(replaced, 60, "the load job to stop", poll_s=0.01)
            for quote in batch:
                future = publisher.publish(topic, quote.to_json(), **quote.pubsub_attributes())
                published.append(future.result())

        publishing = threading.Thread(target=publish_once_stopped)
        publishing.start()
        restart = dagbag.get_dag("quotestream_restart").test(
            run_conf={
                "job": "load",
                "mode": "update",
                "transform_name_mappings": {},
                "timeout_s": 60,
            }
        )
        publishing.join(timeout=90)
        assert len(published) == len(batch), "the publisher thread did not finish"
        assert states(restart) == {"restart": "success"}
        relaunched = runner.find("quotestream-load")
        assert relaunched.state == "running"
        assert relaunched.job_id != old_load

        def batch_loaded() -> bool:
            rows = warehouse.query(
                "SELECT COUNT(DISTINCT event_id) AS n FROM {dataset}.quotes "
                "WHERE source = 'restart-test'"
            )
            return int(rows[0]["n"]) == len(batch)

        wait_until(batch_loaded, 120, "the quotes published during the restart", poll_s=1.0)
    finally:
        for name in ("quotestream-extract", "quotestream-load"):
            runner.stop(name, StopMode.CANCEL)


def test_backfill_of_an_interval_twice_gives_the_same_rows(
    dagbag: Any, local_target: Settings
) -> None:
    bootstrap.build_provision_service(local_target).run()
    end = pendulum.now("UTC").start_of("hour").subtract(hours=3)
    for _ in range(2):
        run = dagbag.get_dag("quotestream_backfill").test(logical_date=end)
        assert states(run) == {"backfill": "success"}
    rows = bootstrap.build_warehouse(local_target).query("SELECT event_id FROM {dataset}.quotes")
    market = MarketSimulator(SEED, PAIR_CATALOG)
    start_ms = to_ms(end - timedelta(hours=1))
    expected = [
        q.event_id
        for pair in PAIRS.split(",")
        for _, q in market.quotes_between(PAIR_CATALOG[pair], start_ms, to_ms(end))
    ]
    assert sorted(r["event_id"] for r in rows) == sorted(expected)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A Slack-compatible webhook receiver on loopback, wired as the alerts connection."""
    with serving(Webhook()) as hook:
        monkeypatch.setenv("AIRFLOW_CONN_QUOTESTREAM_ALERTS", hook.alerts_connection)
        yield hook.bodies


def test_data_quality_passes_on_good_data_and_fails_and_alerts_on_bad(
    dagbag: Any, local_target: Settings, webhook: list[dict[str, Any]]
) -> None:
    bootstrap.build_provision_service(local_target).run()
    checked_end = pendulum.now("UTC").start_of("hour").subtract(hours=4)
    backfill = dagbag.get_dag("quotestream_backfill").test(logical_date=checked_end)
    assert states(backfill) == {"backfill": "success"}
    # A run checks the hour before its own interval: the run ending an hour later.
    run_end = checked_end.add(hours=1)
    good = dagbag.get_dag("quotestream_data_quality").test(logical_date=run_end)
    assert states(good) == {"check": "success"}
    assert webhook == []

    warehouse = bootstrap.build_warehouse(local_target)
    market = MarketSimulator(SEED, PAIR_CATALOG)
    inside = market.quote(PAIR_CATALOG["USD-BRL"], to_ms(checked_end) // 1000 - 600)
    warehouse.insert_rows(
        "quotes", [{**quote_row(inside, to_ms(checked_end)), "bid": "9.9999"}], ["planted-crossed"]
    )
    bad = dagbag.get_dag("quotestream_data_quality").test(logical_date=run_end.add(seconds=1))
    assert states(bad) == {"check": "failed"}
    failed = warehouse.query(
        "SELECT DISTINCT check_name FROM {dataset}.dq_results WHERE NOT passed ORDER BY 1"
    )
    assert [r["check_name"] for r in failed] == ["bid_le_ask", "duplicates"]
    assert len(webhook) == 1, "a failed check is not retried: one alert"
    assert "quotestream_data_quality.check failed" in webhook[0]["text"]
    assert "bid_le_ask" in webhook[0]["text"]


def test_replay_dead_letters_dry_run_then_for_real_then_again(
    dagbag: Any, local_target: Settings
) -> None:
    from quotestream.domain.schemas import QUOTES_DEAD_LETTER
    from tests.support.dead_letters import DeadLetters

    bootstrap.build_provision_service(local_target).run()
    warehouse = bootstrap.build_warehouse(local_target)
    letters = DeadLetters()
    # USD-BRL is configured here: its dead letter now parses; BTC-USD is not: still refused.
    assert warehouse.insert_rows(QUOTES_DEAD_LETTER.name, letters.rows, letters.ids) == []
    conf = {"start": letters.start.isoformat(), "end": letters.end.isoformat(), "reasons": []}

    def replays() -> list[tuple[str, str | None]]:
        rows = warehouse.query(
            "SELECT outcome, reason FROM {dataset}.dead_letter_replays ORDER BY outcome, reason"
        )
        return [(row["outcome"], row["reason"]) for row in rows]

    dry = dagbag.get_dag("quotestream_replay_dead_letters").test(run_conf=conf)
    assert states(dry) == {"replay": "success"}
    assert replays() == []
    for _ in range(2):
        run = dagbag.get_dag("quotestream_replay_dead_letters").test(
            run_conf={**conf, "dry_run": False}
        )
        assert states(run) == {"replay": "success"}
        assert replays() == [
            ("replayed", None),
            ("still_failing", "bad_encoding"),
            ("still_failing", "malformed_json"),
            ("still_failing", "unknown_pair"),
        ]
    quotes = warehouse.query("SELECT event_id FROM {dataset}.quotes")
    assert [row["event_id"] for row in quotes] == [letters.loaded_quote["event_id"]]


def test_deploy_replaces_the_local_api_and_smoke_tests_it(
    dagbag: Any, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    from quotestream.adapters.local.processes import free_port, pid_alive
    from quotestream.adapters.local.stack import LocalStack
    from tests.conftest import REPO

    project = f"deploy-{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("pubsub", "bigquery", "api")}
    stack = LocalStack(state_dir, REPO, project, ports)
    try:
        for key, value in stack.up(say=lambda _: None)[0].items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("QUOTESTREAM_LOCAL_STATE_DIR", str(state_dir))
        bootstrap.build_provision_service(Settings()).run()
        before = {s.name: s.pid for s in stack.status()}

        run = dagbag.get_dag("quotestream_deploy_api").test()

        assert states(run) == {"deploy": "success", "smoke_test": "success"}
        after = {s.name: s for s in stack.status()}
        assert after["api"].pid != before["api"]
        assert after["api"].healthy
        assert after["api"].port == ports["api"]
        assert not pid_alive(before["api"])
        assert after["pubsub"].pid == before["pubsub"]
    finally:
        stack.down(say=lambda _: None)


def test_teardown_needs_the_project_id_then_removes_everything(
    dagbag: Any, local_target: Settings, webhook: list[dict[str, Any]]
) -> None:
    bootstrap.build_provision_service(local_target).run()
    refused = dagbag.get_dag("quotestream_teardown").test(run_conf={"confirm": "yes"})
    assert states(refused) == {"teardown": "failed"}
    assert "quotestream_teardown.teardown failed" in webhook[0]["text"]
    done = dagbag.get_dag("quotestream_teardown").test(run_conf={"confirm": local_target.project})
    assert states(done) == {"teardown": "success"}
    again = bootstrap.build_provision_service(local_target).run()
    assert {str(result.outcome) for result in again} == {"created"}
