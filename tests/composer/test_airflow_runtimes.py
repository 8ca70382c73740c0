"""quotestream in the Airflow runtimes it supports, installed as Composer installs it: the core
from its wheel by exact version, nothing of the checkout on the path, the plugins folder empty
(as on Composer 3's scheduler and triggerer). `make airflow-runtimes` builds them:

- composer-3.1: Composer's Python (3.11) with Composer's preinstalled packages for Airflow 3.1
  (composer/constraints.txt) and the environment's PyPI packages (composer/requirements.txt);
- airflow-3.3: Python 3.12 with the project's lock (Airflow 3.3).

Each runtime's own Python runs tests/support/airflow_probe.py; the emulators are this session's.
On composer-3.1 the DAGs run with `dag.test()` on the local target, whose jobs run in the
project's venv (Beam's runtime, as Dataflow's workers are not Composer's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pendulum
import pytest

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.ports.jobs import StopMode
from quotestream.settings import Settings
from tests.conftest import REPO, SEED
from tests.support.local_runs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.composer, pytest.mark.slow]

RUNTIMES = {"composer-3.1": ("3.1.", "3.11"), "airflow-3.3": ("3.3.", "3.12")}
PROBE = REPO / "tests" / "support" / "airflow_probe.py"
DAG_IDS = sorted(path.stem for path in (REPO / "dags").glob("*.py"))


def runtime_python(runtime: str) -> Path:
    python = REPO / f".venv-{runtime}" / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"no {runtime} runtime at {python.parent.parent}: run make airflow-runtimes")
    return python


def airflow_environment(home: Path) -> dict[str, str]:
    """The caller's environment without anything that puts the checkout on the path."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "AIRFLOW", "VIRTUAL_ENV"))
    }
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    return {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }


def run_in(env: dict[str, str], cwd: Path, *command: str) -> str:
    """Its standard output; its failure with both outputs' ends."""
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout


def probe(runtime: str, env: dict[str, str], *args: str, cwd: Path) -> dict[str, Any]:
    # -I: neither the caller's PYTHON* variables nor the probe's folder on sys.path.
    output = run_in(env, cwd, str(runtime_python(runtime)), "-I", str(PROBE), *args)
    lines = [line for line in output.splitlines() if line.startswith("PROBE ")]
    assert lines, output[-3000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("PROBE "))
    return result


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_dag_imports_and_the_plugin_loads_from_the_wheel(
    runtime: str, tmp_path: Path
) -> None:
    airflow_version, python_version = RUNTIMES[runtime]
    env = airflow_environment(tmp_path / "airflow")

    parsed = probe(runtime, env, "parse", cwd=tmp_path)

    assert parsed["airflow"].startswith(airflow_version)
    assert parsed["python"] == python_version
    assert parsed["import_errors"] == {}
    assert parsed["dag_ids"] == DAG_IDS
    installed = REPO / f".venv-{runtime}"
    assert Path(parsed["quotestream"]).is_relative_to(installed), parsed["quotestream"]
    assert list((tmp_path / "airflow" / "plugins").iterdir()) == []
    assert parsed["plugin_errors"] == {}
    assert [source.split(":")[0] for source in parsed["plugins"]] == ["quotestream==0.1.0"]
    assert parsed["views"] == ["/quotestream/"]
    assert parsed["beam"] is False


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_api_server_mounts_the_page_behind_its_login(runtime: str, tmp_path: Path) -> None:
    env = airflow_environment(tmp_path / "airflow")
    assert probe(runtime, env, "mount", cwd=tmp_path) == {
        "/quotestream/": 401,
        "/quotestream/api/figures": 401,
    }


@pytest.fixture
def composer_local_target(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pubsub_emulator: ServiceProcess,
    bigquery_emulator: ServiceProcess,
    api_url: str,
) -> tuple[dict[str, str], Settings]:
    """Composer's runtime with a migrated metadata database, pointed at the local stack."""
    for key, value in {
        "QUOTESTREAM_TARGET": "local",
        "QUOTESTREAM_PROJECT": f"composer-{uuid.uuid4().hex[:8]}",
        "QUOTESTREAM_MESSAGE_ORDERING": "false",
        "QUOTESTREAM_LOCAL_STATE_DIR": str(tmp_path / "local-state"),
        # The jobs' runtime: this checkout's pipelines on the project's Python, with Beam.
        "QUOTESTREAM_LOCAL_CHECKOUT": str(REPO),
        "QUOTESTREAM_LOCAL_PYTHON": sys.executable,
        "QUOTESTREAM_API_URL": api_url,
        "QUOTESTREAM_PAIRS": "USD-BRL,EUR-USD",
        "QUOTESTREAM_MARKET_SEED": str(SEED),
    }.items():
        monkeypatch.setenv(key, value)
    env = airflow_environment(tmp_path / "airflow")
    run_in(env, tmp_path, str(runtime_python("composer-3.1").parent / "airflow"), "db", "migrate")
    return env, Settings()


def test_the_dags_run_on_composers_airflow_and_python(
    composer_local_target: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, settings = composer_local_target

    def run(dag_id: str, logical_date: pendulum.DateTime | None = None) -> dict[str, str]:
        args = [dag_id, logical_date.isoformat()] if logical_date else [dag_id]
        result = probe("composer-3.1", env, "run", *args, cwd=tmp_path)
        tasks: dict[str, str] = result["tasks"]
        return tasks

    assert set(run("quotestream_provision").values()) == {"success"}
    warehouse = bootstrap.build_warehouse(settings)
    tables = warehouse.query(
        "SELECT table_name FROM {dataset}.INFORMATION_SCHEMA.TABLES ORDER BY table_name"
    )
    assert "quotes" in [table["table_name"] for table in tables]

    checked_end = pendulum.now("UTC").start_of("hour").subtract(hours=4)
    assert run("quotestream_backfill", checked_end) == {"backfill": "success"}
    backfilled = warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"]
    assert backfilled > 0
    assert run("quotestream_backfill", checked_end) == {"backfill": "success"}
    assert warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"] == backfilled
    # A run checks the hour before its own interval: the run ending an hour later.
    assert run("quotestream_data_quality", checked_end.add(hours=1)) == {"check": "success"}

    runner = bootstrap.build_job_runner(settings)
    try:
        assert run("quotestream_streaming")["ensure_running"] == "success"
        jobs = {name: runner.find(name) for name in ("quotestream-extract", "quotestream-load")}
        assert all(job and job.state == "running" for job in jobs.values()), jobs

        def loaded() -> int:
            rows = warehouse.query(
                "SELECT COUNT(*) AS n FROM {dataset}.quotes "
                "WHERE event_ts > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 10 MINUTE)"
            )
            return int(rows[0]["n"])

        wait_until(lambda: loaded() > 0, 120, "live quotes from the launched jobs", poll_s=1.0)
    finally:
        for name in ("quotestream-extract", "quotestream-load"):
            runner.stop(name, StopMode.CANCEL)
