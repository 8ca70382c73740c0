"""Local stand-ins run as child processes: started on loopback, stopped by their pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class StartupError(RuntimeError):
    pass


class EmulatorMissing(RuntimeError):
    """An emulator (or what it runs on) is not installed; the message says what to install."""


# Popen objects of the services this process started: kept so their exit is reaped (and
# Python does not warn about children it forgot) when they are stopped.
_children: dict[int, subprocess.Popen[bytes]] = {}


def remember_child(process: subprocess.Popen[bytes]) -> None:
    """Track a child started elsewhere so stopping it also reaps it."""
    _children[process.pid] = process


def runs(pid: int, marker: str) -> bool:
    """Alive and still the process we recorded: its command line contains `marker` (a pid
    recorded before a reboot may belong to a stranger now). Without /proc, trust the pid."""
    if not pid_alive(pid):
        return False
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return any(marker.encode() in argument for argument in arguments)


def child_running(pid: int) -> bool | None:
    """Whether a child this process started is still running; None if it is not ours."""
    child = _children.get(pid)
    return None if child is None else child.poll() is None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True when anything answers HTTP at `url`, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - loopback URLs we built
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class ServiceProcess:
    name: str
    pid: int
    host: str
    port: int
    log_path: Path
    # A second port the service listens on (the BigQuery emulator's gRPC server).
    grpc_port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group this process leads, then SIGKILL after `timeout`."""
        stop_pid(self.pid, timeout)

    def wait(self, timeout: float) -> int:
        """Exit code (negative: the signal) of a service this process started."""
        return _children[self.pid].wait(timeout)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    # Each service is started as a session leader, so its pid is also its process group:
    # wrapper scripts and their children go down together.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The leader first (reaped if it is our child), then whatever it started.
            if not _running(pid) and not _group_alive(pid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(pid: int) -> bool:
    child = _children.get(pid)
    if child is None:
        return pid_alive(pid)
    if child.poll() is None:
        return True
    del _children[pid]
    return False


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    host: str,
    port: int,
    log_path: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> ServiceProcess:
    """Start `argv` detached, logging to `log_path`, and wait until `ready()` holds."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argv is built by this package
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    remember_child(process)
    service = ServiceProcess(name, process.pid, host, port, log_path)
    try:
        _wait_until_ready(service, process, ready, timeout)
    except BaseException:
        # Its own session shields it from Ctrl-C: whoever gives up on it must stop it.
        service.stop()
        raise
    return service


def _wait_until_ready(
    service: ServiceProcess,
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(
                f"{service.name} exited with status {process.returncode} while starting; "
                f"last lines of {service.log_path}:\n{tail(service.log_path)}"
            )
        if ready():
            return
        time.sleep(0.1)
    raise StartupError(
        f"{service.name} did not answer within {timeout:.0f} s; see {service.log_path}"
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_api_process(
    port: int, log_path: Path, env: Mapping[str, str] | None = None, host: str = "127.0.0.1"
) -> ServiceProcess:
    """The API server as its own process (the local stand-in for Cloud Run)."""
    return start_service(
        "api",
        [
            sys.executable,
            "-m",
            "quotestream.entrypoints.cli",
            "api",
            "--host",
            host,
            "--port",
            str(port),
        ],
        host=host,
        port=port,
        log_path=log_path,
        ready=lambda: http_answers(f"http://{host}:{port}/health"),
        env=env,
    )


def pipeline_command(
    repo_root: Path, pipeline: str, args: Sequence[str], python: str = sys.executable
) -> list[str]:
    """A pipeline's entry point on the local runner (the launcher keeps it off Prism)."""
    entry = repo_root / "beam_pipelines" / f"{pipeline}_quotes.py"
    return [python, str(entry), "--runner=DirectRunner", *args]


def start_pipeline_process(
    repo_root: Path,
    pipeline: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> ServiceProcess:
    """A pipeline run in the foreground of its own process; it listens on nothing."""
    return start_service(
        f"{pipeline}-pipeline",
        pipeline_command(repo_root, pipeline, args),
        host="127.0.0.1",
        port=0,
        log_path=log_path,
        ready=lambda: True,
        env=env,
    )
