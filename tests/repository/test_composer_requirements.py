"""The Composer environment's PyPI packages resolve together with what Composer runs (Airflow
3.3.2 and its google provider 22.8.0), so a pin that conflicts with Composer fails here and
not in a 20-minute environment update. uv resolves against the package registry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quotestream.entrypoints.composer import wanted_packages
from tests.conftest import REPO

pytestmark = pytest.mark.integration

COMPOSER_RUNS = ["apache-airflow==3.3.2", "apache-airflow-providers-google==22.8.0"]


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_the_composer_requirements_resolve_with_composers_airflow_and_google_provider(
    python: str, tmp_path: Path
) -> None:
    wanted = tmp_path / "composer.in"
    wanted.write_text(
        "\n".join([f"-r {REPO / 'composer' / 'requirements.txt'}", *COMPOSER_RUNS]) + "\n"
    )
    resolved = tmp_path / "resolved.txt"
    completed = subprocess.run(
        [
            str(REPO / "scripts" / "uv"),
            "pip",
            "compile",
            "--quiet",
            "--python-version",
            python,
            str(wanted),
            "-o",
            str(resolved),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    pins = resolved.read_text()
    for name in wanted_packages(REPO):
        assert f"\n{name}==" in f"\n{pins}", f"{name} is not in the resolution"
    print(f"Python {python}: {pins.count('==')} packages resolved with Composer's Airflow")
