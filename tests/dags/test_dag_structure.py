"""Every DAG imports cleanly and is shaped as the operators expect."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from quotestream.entrypoints.dags import alert_on_failure, alert_on_missed_deadline, table_asset_uri
from tests.conftest import REPO

pytestmark = pytest.mark.unit

DAG_IDS = {
    "quotestream_provision",
    "quotestream_deploy_api",
    "quotestream_streaming",
    "quotestream_restart",
    "quotestream_backfill",
    "quotestream_data_quality",
    "quotestream_teardown",
    "quotestream_replay_dead_letters",
}
# The manual DAGs that stop, replace, delete or rewrite what runs: operators' work only.
OPERATOR_DAGS = {
    "quotestream_teardown",
    "quotestream_restart",
    "quotestream_deploy_api",
    "quotestream_replay_dead_letters",
}
OPERATORS_ONLY = {"Op": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}}
# Airflow 3.1 and 3.3 warn of any `access_control`: it has no successor and only the FAB auth
# manager (Composer's) reads it, until Airflow 4. The one warning the DAGs may give.
ACCESS_CONTROL_DEPRECATED = "The airflow.security.permissions module is deprecated"


def test_every_dag_imports_without_errors_or_warnings(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert {Path(path).stem for path in dagbag.captured_warnings} == OPERATOR_DAGS
    for warnings in dagbag.captured_warnings.values():
        assert all(ACCESS_CONTROL_DEPRECATED in warning for warning in warnings), warnings
    assert set(dagbag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_operators_only_may_run_the_destructive_and_manual_dags(dagbag: Any, dag_id: str) -> None:
    expected = OPERATORS_ONLY if dag_id in OPERATOR_DAGS else None
    assert dagbag.get_dag(dag_id).access_control == expected


def test_the_page_is_guarded_by_dags_that_exist() -> None:
    from quotestream.entrypoints.airflow_plugin import PAGE_DAGS

    assert set(PAGE_DAGS) <= DAG_IDS


def test_ruff_airflow_rules_are_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "AIR", "--preview", "dags"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_each_dag_has_owner_tags_docs_retries_and_the_alert(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.get_dag(dag_id)
    assert "quotestream" in dag.tags
    assert len(dag.doc_md or "") > 80
    for task in dag.tasks:
        assert task.owner == "quotestream"
        assert (
            task.on_failure_callback == [alert_on_failure]
            or task.on_failure_callback is alert_on_failure
        )
        assert task.retry_exponential_backoff


def test_the_quality_dag_docs_list_every_registered_check(dagbag: Any) -> None:
    from quotestream.services.quality_checks import QUALITY_CHECKS

    docs = dagbag.get_dag("quotestream_data_quality").doc_md
    assert all(f"| `{check.name}`" in docs for check in QUALITY_CHECKS)


def test_task_wiring(dagbag: Any) -> None:
    streaming = dagbag.get_dag("quotestream_streaming")
    assert streaming.task_dict["measure_health"].upstream_task_ids == {"ensure_running"}
    # The google provider's scheme, so Composer's lineage knows the table.
    quotes = table_asset_uri("quotes")
    assert re.fullmatch(r"bigquery://[a-z][a-z0-9-]+/[a-z_]+/quotes", quotes)
    assert [o.uri for o in streaming.task_dict["measure_health"].outlets] == [quotes]
    assert [
        o.uri for o in dagbag.get_dag("quotestream_backfill").task_dict["backfill"].outlets
    ] == [quotes]
    check = dagbag.get_dag("quotestream_data_quality").task_dict["check"]
    assert ([i.uri for i in check.inlets], [o.uri for o in check.outlets]) == (
        [quotes],
        [table_asset_uri("dq_results")],
    )
    deploy = dagbag.get_dag("quotestream_deploy_api")
    assert deploy.task_dict["smoke_test"].upstream_task_ids == {"deploy"}
    backfill = dagbag.get_dag("quotestream_backfill")
    assert backfill.task_dict["backfill"].retries == 2
    assert dagbag.get_dag("quotestream_restart").params["mode"] == "default"


def test_parse_time_of_the_dags_folder(dagbag: Any) -> None:
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    stats = sorted(bag.dagbag_stats, key=lambda s: s.duration, reverse=True)
    print(
        f"\nDagBag of dags/: {elapsed * 1000:.0f} ms; per file: "
        + ", ".join(
            f"{s.file.rsplit('/', 1)[-1]} {s.duration.total_seconds() * 1000:.0f} ms" for s in stats
        )
    )


def test_quality_and_backfill_runs_have_a_deadline_that_alerts(dagbag: Any) -> None:
    deadlines = {
        dag_id: dagbag.get_dag(dag_id).dagrun_timeout
        for dag_id in ("quotestream_data_quality", "quotestream_backfill")
    }
    assert deadlines == {
        "quotestream_data_quality": timedelta(minutes=30),
        "quotestream_backfill": timedelta(hours=2),
    }
    for dag_id in deadlines:
        callbacks = dagbag.get_dag(dag_id).on_failure_callback
        assert callbacks in ([alert_on_missed_deadline], alert_on_missed_deadline)
