"""For tests that run the local stack's processes: waiting on them, and an environment that
does not point them at another test's emulators."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quotestream import bootstrap
from quotestream.adapters.local.processes import free_port, start_api_process
from quotestream.bootstrap import repo_root
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import Quote, now_ms
from quotestream.domain.schemas import ALL_TABLES, TableSpec
from quotestream.ports import Warehouse
from quotestream.settings import Settings


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, poll_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


@contextmanager
def api_serving(logs_dir: Path, env: Mapping[str, str]) -> Iterator[str]:
    """The API as its own process on a free port for the block: its URL."""
    port = free_port()
    api = start_api_process(port, logs_dir / f"api-{port}.log", env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


def provisioned_project(prefix: str, **settings: Any) -> Settings:
    """Settings of a new project on the session's emulators (no message ordering: the
    emulator's ordered delivery is not what the tests are about), provisioned."""
    project = Settings(
        project=f"{prefix}-{uuid.uuid4().hex[:8]}",
        target="local",
        message_ordering=False,
        **settings,
    )
    bootstrap.build_provision_service(project).run()
    return project


def fresh_warehouse(
    prefix: str, tables: Sequence[TableSpec] = ALL_TABLES
) -> tuple[Settings, Warehouse]:
    """A new project on the session's BigQuery emulator, with the dataset and `tables`."""
    settings = Settings(project=f"{prefix}-{uuid.uuid4().hex[:8]}", target="local")
    warehouse = bootstrap.build_warehouse(settings)
    warehouse.ensure_dataset()
    for table in tables:
        warehouse.ensure_table(table)
    return settings, warehouse


def run_own_stack_command(*args: str, timeout: float) -> tuple[int, str]:
    """`quotestream ARGS` from the repository, starting its own emulators: (exit code, what it
    printed)."""
    completed = subprocess.run(
        [sys.executable, "-m", "quotestream.entrypoints.cli", *args],
        cwd=repo_root(),
        env=own_stack_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


def own_stack_env() -> dict[str, str]:
    """This environment without what points at other emulators: the command starts its own."""
    dropped = ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "BIGQUERY_STORAGE_EMULATOR_HOST")
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("QUOTESTREAM_") and key not in dropped
    }


def recent_quotes(seed: int, source: str, count: int) -> list[Quote]:
    """Up to `count` quotes of every pair from 150 s to 30 s ago, pair after pair."""
    now = now_ms()
    market = MarketSimulator(seed, PAIR_CATALOG, source=source)
    return [
        quote
        for spec in PAIR_CATALOG.values()
        for _, quote in market.quotes_between(spec, now - 150_000, now - 30_000)
    ][:count]


def stay_on_loopback(report: Callable[[object], None]) -> Callable[[], None]:
    """From now on, any connection or name lookup beyond this machine fails at once (no
    credentials lookup or metadata-server probe can hang on retries) after `report` is told
    where it went. Returns what undoes it."""
    loopback = ("127.0.0.1", "::1", "localhost")
    connect = socket.socket.connect
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in loopback:
            report(address)
            raise OSError(f"offline: connect to {address}")
        return connect(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (*loopback, None):
            report(host)
            raise socket.gaierror(f"offline: lookup of {host}")
        return getaddrinfo(host, *args, **kwargs)

    def undo() -> None:
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo
    return undo
