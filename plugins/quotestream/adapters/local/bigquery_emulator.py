"""The BigQuery emulator (local-bigquery, DuckDB-backed), installed offline by the project's
own `emulators/bigquery/install.sh` into a venv of its own (it needs Python 3.13)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
from pathlib import Path

from quotestream.adapters.local.processes import (
    EmulatorMissing,
    ServiceProcess,
    free_port,
    http_answers,
    start_service,
)


def emulator_dir(repo_root: Path) -> Path:
    return repo_root / "emulators" / "bigquery"


def install_bigquery_emulator(repo_root: Path) -> None:
    """Idempotent: a no-op when the pinned requirements are already installed."""
    script = emulator_dir(repo_root) / "install.sh"
    if not script.is_file():
        raise EmulatorMissing(f"{script} not found: run quotestream from a clone of the repo")
    uv = os.environ.get("UV") or str(repo_root / "scripts" / "uv")
    result = subprocess.run(  # noqa: S603 - our own script
        [str(script)], check=False, env={**os.environ, "UV": uv}
    )
    if result.returncode != 0:
        raise EmulatorMissing(f"installing the BigQuery emulator failed ({script})")


def start_bigquery_emulator(
    repo_root: Path,
    port: int,
    log_path: Path,
    data_dir: Path,
    project: str,
    host: str = "127.0.0.1",
    grpc_port: int | None = None,
) -> ServiceProcess:
    """Start the emulator with its tables under `data_dir` and wait until both its REST port
    and its gRPC port (the Storage Write API; a free one unless given) answer."""
    install_bigquery_emulator(repo_root)
    grpc_port = grpc_port or free_port(host)

    def ready() -> bool:
        return http_answers(
            f"http://{host}:{port}/bigquery/v2/projects/{project}/datasets"
        ) and _listens(host, grpc_port)

    service = start_service(
        "bigquery-emulator",
        [str(emulator_dir(repo_root) / "run.sh"), str(port), str(grpc_port)],
        host=host,
        port=port,
        log_path=log_path,
        ready=ready,
        env={"BIGQUERY_EMULATOR_PROJECT": project, "BIGQUERY_EMULATOR_DATA": str(data_dir)},
        timeout=120,
    )
    return dataclasses.replace(service, grpc_port=grpc_port)


def emulator_environment(service: ServiceProcess) -> dict[str, str]:
    """What points the BigQuery clients at a running emulator: REST and Storage Write."""
    return {
        "BIGQUERY_EMULATOR_HOST": f"http://{service.address}",
        "BIGQUERY_STORAGE_EMULATOR_HOST": service.grpc_address,
    }


def _listens(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True
