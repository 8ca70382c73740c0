from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_the_dry_run_prints_one_import_per_dag_file_and_the_plugin_package() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "quotestream.cli",
            "composer",
            "deploy",
            "--environment",
            "prod-composer",
            "--location",
            "us-central1",
            "--dry-run",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    dag_files = sorted(p.name for p in (REPO / "dags").glob("*.py"))
    assert lines == [
        *(
            f"would run: gcloud composer environments storage dags import --environment "
            f"prod-composer --location us-central1 --source dags/{name}"
            for name in dag_files
        ),
        "would run: gcloud composer environments storage plugins import --environment "
        "prod-composer --location us-central1 --source plugins/quotestream",
    ]
