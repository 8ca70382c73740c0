"""A stand-in project and the stand-in tools for the bootstrap and the release, as fixtures
(registered by tests/conftest.py) for tests/gcp and the deploy-from-zero DAG test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from quotestream.adapters.local.processes import ServiceProcess
from tests.conftest import REPO
from tests.support.standins import cli
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.monitoring import MonitoringStandIn

REGION = "us-central1"
COMPOSER_IMAGE = "composer-3-airflow-3.1.8-build.3"

Quotestream = Callable[..., str]


def empty_project(apis: GoogleApis) -> str:
    """A new empty stand-in project, permissions enforced."""
    name = f"qs-{uuid.uuid4().hex[:8]}"
    apis.cli.reset(name)
    apis.authority.enforced = True
    return name


def with_tools(apis: GoogleApis, bin_dir: Path) -> Quotestream:
    """`quotestream ARGS...` with the stand-in tools first on PATH: its output, or the test
    fails with its error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTESTREAM_")}
    env |= cli.install(bin_dir, apis.url)

    def run(*args: str) -> str:
        command = [sys.executable, "-m", "quotestream.entrypoints.cli", *args]
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    return run


@pytest.fixture
def project(
    google_apis: GoogleApis,
    monitoring: MonitoringStandIn,
    pubsub_emulator: ServiceProcess,
    bigquery_emulator: ServiceProcess,
) -> str:
    """After Monitoring's reset, which forgets the shared grants."""
    return empty_project(google_apis)


@pytest.fixture
def quotestream(google_apis: GoogleApis, tmp_path: Path) -> Quotestream:
    return with_tools(google_apis, tmp_path / "bin")


def bootstrap_args(project: str, *extra: str) -> tuple[str, ...]:
    return (
        "gcp",
        "bootstrap",
        f"--project={project}",
        f"--region={REGION}",
        f"--composer-image-version={COMPOSER_IMAGE}",
        *extra,
    )


def release_args(project: str, *extra: str) -> tuple[str, ...]:
    return ("release", f"--project={project}", f"--region={REGION}", *extra)
