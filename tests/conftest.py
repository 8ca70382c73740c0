"""Shared fixtures. Servers start on free loopback ports and are stopped by their pid."""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from quotestream.adapters.local.processes import ServiceProcess, free_port

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.support.standins.fixtures", "tests.support.standins.project"]

# What a test needs, read from the fixtures it uses (directly or through others), so that the
# markers cannot drift from the tests.
NEEDS = {
    "emulators": {"pubsub_emulator", "bigquery_emulator"},
    "airflow": {"airflow_db"},
    "gcp": {"google_apis_server", "monitoring_server"},
}


# No test may take longer: a hang (a lost response, a stuck subprocess) fails that test with
# its traceback instead of stalling the suite until CI's limit. The slowest test takes a few
# minutes; faulthandler_timeout (pyproject.toml) dumps every thread's stack well before this.
TEST_TIMEOUT_S = 900


class TimeLimitExceeded(Exception):
    pass


def _time_out(signum: int, frame: object) -> None:
    raise TimeLimitExceeded(f"the test ran past {TEST_TIMEOUT_S} s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    previous = signal.signal(signal.SIGALRM, _time_out)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        return (yield)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)
    # The files of slow tests first (each file keeps its order): the workers (make test) take
    # files in this order, and a long test begun last would run on alone at the end.
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def pubsub_emulator(logs_dir: Path) -> Iterator[ServiceProcess]:
    """Google's Pub/Sub emulator, once per session; PUBSUB_EMULATOR_HOST points at it."""
    from quotestream.adapters.local.pubsub_emulator import start_pubsub_emulator

    emulator = start_pubsub_emulator(free_port(), logs_dir / "pubsub-emulator.log")
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.address
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def bigquery_emulator(
    logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The BigQuery emulator, once per session; BIGQUERY_EMULATOR_HOST and
    BIGQUERY_STORAGE_EMULATOR_HOST point at it."""
    from quotestream.adapters.local.bigquery_emulator import (
        emulator_environment,
        start_bigquery_emulator,
    )

    emulator = start_bigquery_emulator(
        REPO,
        free_port(),
        logs_dir / "bigquery-emulator.log",
        tmp_path_factory.mktemp("bigquery-data"),
        project="quotestream-test",
    )
    environment = emulator_environment(emulator)
    previous = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield emulator
    finally:
        emulator.stop()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


SEED = 777


@pytest.fixture
def api_url(logs_dir: Path) -> Iterator[str]:
    """The API as a process, with a known seed, its history served for the test."""
    from tests.support.local_runs import api_serving

    with api_serving(logs_dir, {"QUOTESTREAM_MARKET_SEED": str(SEED)}) as url:
        yield url


@pytest.fixture
def provisioned(
    api_url: str, pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess
) -> Any:
    """Settings of a fresh project on the emulators, provisioned, reading the test's API."""
    from quotestream.settings import Settings
    from tests.support.local_runs import provisioned_project

    def make(prefix: str, pairs: tuple[str, ...]) -> Settings:
        return provisioned_project(prefix, api_url=api_url, pairs=pairs)

    return make


@pytest.fixture
def job_target(
    monkeypatch: pytest.MonkeyPatch,
    pubsub_emulator: ServiceProcess,
    bigquery_emulator: ServiceProcess,
    tmp_path: Path,
) -> Iterator[Any]:
    """A fresh project on the emulators, provisioned, and set in the environment that the
    local job runner hands the jobs it launches (as the DAGs launch them). Whatever job is
    still running in it when the test ends (a failed test's, one a scheduler launched) is
    cancelled: a streaming job never ends by itself."""
    import uuid

    from quotestream import bootstrap
    from quotestream.ports.jobs import StopMode
    from quotestream.services.streaming import JOB_NAMES
    from quotestream.settings import Settings

    made: list[Settings] = []

    def make(prefix: str, **extra_env: str) -> Settings:
        for key, value in {
            "QUOTESTREAM_TARGET": "local",
            "QUOTESTREAM_PROJECT": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "QUOTESTREAM_MESSAGE_ORDERING": "false",
            "QUOTESTREAM_LOCAL_STATE_DIR": str(tmp_path / "state"),
            **extra_env,
        }.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        bootstrap.build_provision_service(settings).run()
        made.append(settings)
        return settings

    yield make
    for settings in made:
        runner = bootstrap.build_job_runner(settings)
        for name in JOB_NAMES.values():
            job = runner.find(name)
            if job is not None and not job.state.terminal:
                runner.stop(name, StopMode.CANCEL)
