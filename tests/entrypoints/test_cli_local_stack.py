"""`quotestream local up | status | down` as a new user runs it: the real command, in a
fresh state folder, on free ports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.pubsub_v1 import PublisherClient

from quotestream.adapters.local.processes import free_port, pid_alive
from quotestream.adapters.local.stack import read_env_file
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def quotestream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quotestream.entrypoints.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        env=env,
        check=False,
    )


def test_up_twice_status_and_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    ports = [f"--{name}-port={free_port()}" for name in ("pubsub", "bigquery", "api")]
    try:
        up = quotestream("local", "--state-dir", str(state), "up", *ports)
        assert up.returncode == 0, up.stderr
        env = read_env_file(state / "env")
        assert set(env) >= {
            "PUBSUB_EMULATOR_HOST",
            "BIGQUERY_EMULATOR_HOST",
            "QUOTESTREAM_API_URL",
            "QUOTESTREAM_API_KEY",
            "QUOTESTREAM_PROJECT",
            "GOOGLE_CLOUD_PROJECT",
        }
        assert env["BIGQUERY_EMULATOR_HOST"].startswith("http://127.0.0.1:")
        assert env["QUOTESTREAM_API_KEY"] not in up.stdout  # printed masked
        assert (state / "env").stat().st_mode & 0o077 == 0

        again = quotestream("local", "--state-dir", str(state), "up")
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 3
        assert read_env_file(state / "env") == env

        status = quotestream("local", "--state-dir", str(state), "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") == 3
        pids = [int(line.split()[2]) for line in status.stdout.splitlines()[1:]]

        # The official clients reach every part with only the file's variables.
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        project = env["QUOTESTREAM_PROJECT"]
        publisher = PublisherClient()
        publisher.create_topic(name=publisher.topic_path(project, "from-the-env-file"))
        client = bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": env["BIGQUERY_EMULATOR_HOST"]},
        )
        client.create_dataset("from_the_env_file")
        assert "from_the_env_file" in [d.dataset_id for d in client.list_datasets()]
        assert httpx.get(f"{env['QUOTESTREAM_API_URL']}/health").status_code == 200
    finally:
        down = quotestream("local", "--state-dir", str(state), "down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 3
    assert not any(pid_alive(pid) for pid in pids)
    assert not (state / "env").exists()
    after = quotestream("local", "--state-dir", str(state), "status")
    assert after.returncode == 3
    assert after.stdout.count("down") == 3


def test_up_explains_what_to_install_when_java_is_missing(tmp_path: Path) -> None:
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path)}
    result = quotestream(
        "local",
        "--state-dir",
        str(tmp_path / "state"),
        "up",
        f"--pubsub-port={free_port()}",
        env=env,
    )
    assert result.returncode == 1
    assert "Java is not installed" in result.stderr
    assert (
        "apt-get install openjdk-17-jre-headless google-cloud-cli-pubsub-emulator" in result.stderr
    )
    assert "Traceback" not in result.stderr
