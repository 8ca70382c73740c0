from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quotestream.entrypoints.composer import sync_commands, wanted_packages
from tests.conftest import REPO

pytestmark = pytest.mark.unit

DEPLOY = [
    sys.executable,
    "-m",
    "quotestream.entrypoints.cli",
    "composer",
    "deploy",
    "--environment",
    "prod-composer",
    "--location",
    "us-central1",
]


def test_the_dry_run_prints_the_package_update_one_import_per_dag_file_and_the_plugins() -> None:
    result = subprocess.run(
        [*DEPLOY, "--dry-run"], cwd=REPO, capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    dag_files = sorted(p.name for p in (REPO / "dags").glob("*.py"))
    storage = "gcloud composer environments storage"
    where = "--environment prod-composer --location us-central1"
    assert lines == [
        "would run (when the environment's PyPI packages differ): gcloud composer environments "
        "update prod-composer --location us-central1 --update-pypi-packages-from-file "
        "composer/requirements.txt",
        f"would run: {storage} plugins import {where} --source plugins/.airflowignore",
        f"would run: {storage} plugins import {where} --source plugins/quotestream",
        f"would run: {storage} plugins import {where} --source plugins/quotestream_cockpit.py",
        *(f"would run: {storage} dags import {where} --source dags/{name}" for name in dag_files),
    ]


def test_the_sync_ships_nothing_of_the_development_harness() -> None:
    sources = [
        REPO / command[command.index("--source") + 1]
        for command in sync_commands(REPO, "prod-composer", "us-central1")
    ]
    shipped = [
        path
        for source in sources
        for path in ([source] if source.is_file() else source.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert len(shipped) > 50, shipped
    assert [path for path in shipped if "quotestream_dev" in path.read_text()] == []
    assert not any(path.is_relative_to(REPO / "dev") for path in shipped)


def test_the_composer_requirements_are_the_core_and_gcp_pins_of_the_lock(tmp_path: Path) -> None:
    regenerated = tmp_path / "requirements.txt"
    subprocess.run(
        [sys.executable, REPO / "scripts" / "composer-requirements", regenerated], check=True
    )
    assert regenerated.read_text() == (REPO / "composer" / "requirements.txt").read_text(), (
        "composer/requirements.txt is stale: run make lock"
    )
    assert {"pydantic-settings", "google-cloud-dataflow-client"} <= set(wanted_packages(REPO))
    assert "apache-beam" not in wanted_packages(REPO), "Composer's tasks never import Beam"


def _fake_gcloud(tmp_path: Path, installed: dict[str, str]) -> dict[str, str]:
    """A gcloud on PATH that records its arguments and describes an environment with
    `installed` as its PyPI packages."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "describe.json").write_text(
        json.dumps({"config": {"softwareConfig": {"pypiPackages": installed}}})
    )
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        f'case "$3" in describe) cat {tmp_path}/describe.json;; esac\n'
    )
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_deploy_updates_the_packages_only_when_the_environment_lacks_them(
    tmp_path: Path,
) -> None:
    wanted = wanted_packages(REPO)
    for installed, updates in (({}, 1), ({**wanted, "extra-package": "==1.0"}, 0)):
        calls = tmp_path / "calls"
        calls.unlink(missing_ok=True)
        env = _fake_gcloud(tmp_path, installed)
        subprocess.run(DEPLOY, cwd=REPO, env=env, capture_output=True, check=True)
        made = calls.read_text().splitlines()
        assert sum(call.startswith("composer environments update") for call in made) == updates
        assert sum(" import " in call for call in made) == len(list(REPO.glob("dags/*.py"))) + 3
