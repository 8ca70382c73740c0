"""Airflow for the DAG tests: a private AIRFLOW_HOME with a SQLite metadata DB, the folders laid
out as Composer 3 lays them out (dags/, an empty plugins folder; quotestream as installed), no
examples. Set before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from quotestream_dev.local_airflow import deployed_layout
from tests.conftest import REPO

AIRFLOW_HOME = tempfile.mkdtemp(prefix="quotestream-airflow-")
AIRFLOW_ENV = {
    "AIRFLOW_HOME": AIRFLOW_HOME,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    **deployed_layout(REPO, Path(AIRFLOW_HOME)),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
}
os.environ.update(AIRFLOW_ENV)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="session")
def dagbag(airflow_db: None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "local-state"
