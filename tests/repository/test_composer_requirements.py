"""The Composer environment's PyPI packages (composer/requirements.txt) add to what Composer
preinstalls (composer/constraints.txt) and change none of it, each pinned; they are what
scripts/composer-requirements resolves today (it asks the package index, with uv)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from quotestream.entrypoints.composer import project_version, wanted_packages
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _preinstalled() -> dict[str, str]:
    text = (REPO / "composer" / "constraints.txt").read_text()
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


def test_the_composer_packages_are_pinned_and_upgrade_nothing_of_composers() -> None:
    wanted = wanted_packages(REPO)
    preinstalled = _preinstalled()
    assert {"apache-airflow", "apache-airflow-providers-google"} <= set(preinstalled)
    assert wanted["quotestream"] == f"=={project_version(REPO)}"
    assert all(specifier.startswith("==") for specifier in wanted.values()), wanted
    assert set(wanted) & set(preinstalled) == set(), "an upgrade of Composer's packages"
    assert "apache-beam" not in wanted, "Composer's tasks never import Beam"


def test_the_composer_requirements_are_what_the_script_resolves(tmp_path: Path) -> None:
    regenerated = tmp_path / "requirements.txt"
    done = subprocess.run(
        [sys.executable, REPO / "scripts" / "composer-requirements", regenerated],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert regenerated.read_text() == (REPO / "composer" / "requirements.txt").read_text(), (
        "composer/requirements.txt is stale: run make lock"
    )
