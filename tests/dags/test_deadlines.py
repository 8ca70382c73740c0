"""Deadlines, enforced by a real scheduler: a `quotestream_backfill` run still unfinished after
its deadline (here two seconds; the default pool has no slot, so its task never starts) is
stopped, and the DAG processor's failure callback alerts through the alerts connection's
webhook. Stopping a run for another reason alerts nothing more than its task did."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from quotestream.adapters.local.processes import ServiceProcess, start_service
from quotestream.entrypoints import dags
from quotestream_dev.local_airflow import deployed_layout
from tests.conftest import REPO
from tests.support.webhook import Webhook, serving

AIRFLOW = str(REPO / ".venv" / "bin" / "airflow")


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serving(Webhook()) as server:
        yield server


def _start(component: str, env: dict[str, str], log: Path) -> ServiceProcess:
    return start_service(
        f"airflow-{component}",
        [AIRFLOW, component],
        host="127.0.0.1",
        port=0,
        log_path=log,
        ready=lambda: True,
        env=env,
    )


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.airflow
def test_a_run_past_its_deadline_is_stopped_and_alerts(tmp_path: Path, webhook: Webhook) -> None:
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # Made with the database: no task can start, so the run outlives its deadline.
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": "0",
        **deployed_layout(REPO, home),
        "QUOTESTREAM_BACKFILL_DEADLINE_S": "2",
        "AIRFLOW_CONN_QUOTESTREAM_ALERTS": webhook.alerts_connection,
    }
    for args in (
        ["db", "migrate"],
        ["dags", "reserialize"],
        ["dags", "unpause", "quotestream_backfill"],
        ["dags", "trigger", "quotestream_backfill", "--logical-date", "2026-12-01T10:00:00Z"],
    ):
        done = subprocess.run(
            [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]

    started = [
        _start(component, env, tmp_path / f"{component}.log")
        for component in ("scheduler", "dag-processor")
    ]
    try:
        give_up = time.monotonic() + 180
        while not webhook.bodies and time.monotonic() < give_up:
            time.sleep(0.5)
    finally:
        for process in started:
            process.stop()

    logs = "\n".join(
        (tmp_path / f"{c}.log").read_text()[-2000:] for c in ("scheduler", "dag-processor")
    )
    assert webhook.bodies, logs
    text = webhook.bodies[0]["text"]
    assert "quotestream: quotestream_backfill missed its deadline" in text
    assert "not finished 2 s after it started" in text
    assert "the scheduler stopped it" in text


@pytest.mark.unit
def test_a_run_failed_by_its_task_alerts_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(dags, "_alert", lambda subject, body: sent.append((subject, body)))
    dag = SimpleNamespace(
        dag_id="quotestream_backfill", dagrun_timeout=dags.run_deadline("backfill_deadline_s")
    )
    dags.alert_on_missed_deadline({"reason": "task_failure", "dag": dag, "run_id": "r1"})
    assert sent == []
    # As the DAG processor passes it for a run that never had a task instance: no dag_run.
    dags.alert_on_missed_deadline({"reason": "timed_out", "dag": dag, "run_id": "r1"})
    assert sent[0][0] == "quotestream: quotestream_backfill missed its deadline"
    assert "run r1 not finished 7200 s after it started; the scheduler stopped it" in sent[0][1]


@pytest.mark.unit
def test_the_deadline_is_read_from_the_environment_at_parse_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert dags.run_deadline("data_quality_deadline_s").total_seconds() == 1800
    monkeypatch.setenv("QUOTESTREAM_DATA_QUALITY_DEADLINE_S", "90")
    assert dags.run_deadline("data_quality_deadline_s").total_seconds() == 90
    monkeypatch.setenv("QUOTESTREAM_DATA_QUALITY_DEADLINE_S", "0")
    with pytest.raises(ValueError, match="QUOTESTREAM_DATA_QUALITY_DEADLINE_S must be at least 1"):
        dags.run_deadline("data_quality_deadline_s")
