"""`quotestream local up | down | status`: the emulators and the API on loopback.

What `up` started is recorded in `<state>/stack.json` (pid, port, log), so `down` stops
exactly that, by pid, and a second `up` starts nothing twice. `<state>/env` holds the
variables that point the Google clients and the CLI at the stack.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quotestream.adapters.local.bigquery_emulator import start_bigquery_emulator
from quotestream.adapters.local.processes import (
    ServiceProcess,
    free_port,
    http_answers,
    runs,
    start_api_process,
    stop_pid,
)
from quotestream.adapters.local.pubsub_emulator import start_pubsub_emulator

HOST = "127.0.0.1"
PREFERRED_PORTS = {"pubsub": 8085, "bigquery": 9050, "api": 8080}
SERVICES = tuple(PREFERRED_PORTS)
# The BigQuery emulator's second port: its gRPC server (the Storage Write API).
PREFERRED_BIGQUERY_GRPC_PORT = 9060


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int | None
    healthy: bool
    log: str | None


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` now. Servers bind with SO_REUSEADDR, so the
    probe does too: connections a crashed server left in TIME_WAIT do not make it taken."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _others_run(services: dict[str, dict[str, Any]], name: str) -> bool:
    return any(_ours(record) for other, record in services.items() if other != name)


def _ours(record: dict[str, Any]) -> bool:
    # Every part is started with its port on its command line.
    return runs(int(record["pid"]), str(record["port"]))


class LocalStack:
    def __init__(
        self,
        state_dir: Path,
        repo_root: Path,
        project: str = "quotestream-local",
        ports: dict[str, int | None] | None = None,
        free_ports_only: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.repo_root = repo_root
        self.project = project
        self.ports = {**dict.fromkeys(SERVICES), **(ports or {})}
        # Benchmarks and tests must not take the usual ports from a stack someone is using.
        self._free_ports_only = free_ports_only
        self.state_file = state_dir / "stack.json"
        self.env_file = state_dir / "env"
        self.logs_dir = state_dir / "logs"

    def up(self, say: Callable[[str], None] = print) -> tuple[dict[str, str], list[str]]:
        """Start what is not running; returns the environment and the parts that were
        restarted after a crash (on their recorded ports)."""
        state = self._load()
        services = state.setdefault("services", {})
        state.setdefault("api_key", secrets.token_urlsafe(24))
        restarted = []
        for name in SERVICES:
            record = services.get(name)
            if record and _ours(record) and self._healthy(name, record["port"]):
                say(f"{name:<9} already running  pid {record['pid']:<7} port {record['port']}")
                continue
            if record and _ours(record):
                stop_pid(record["pid"], timeout=5)  # a half-dead leftover must not hold ports
            if record and _others_run(services, name):
                # The rest of the stack (and any job) still points at the recorded port: keep it.
                say(f"{name:<9} not answering: restarting on its port {record['port']} ...")
                port = self._recorded_port_once_free(name, record["port"])
                restarted.append(name)
            else:
                say(f"{name:<9} starting ...")
                port = self._port(name)
            service = self._start_recorded(state, name, port)
            say(f"{name:<9} ready            pid {service.pid:<7} port {service.port}")
        return self._write_env(state), restarted

    def _recorded_port_once_free(self, name: str, port: int, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while not port_is_free(port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"port {port} of {name} is still taken {timeout_s:.0f} s after {name} "
                    "stopped, by another process; the running API and jobs point at that "
                    "port, so it is not moved: free it, or `quotestream local down` then `up`"
                )
            time.sleep(0.5)
        return port

    def restart_service(self, name: str) -> bool:
        """Replace a part with a fresh process on the same port (start it if it was not
        running). True when a running process was replaced."""
        state = self._load()
        if "api_key" not in state:
            raise RuntimeError("the local stack is not up: run `quotestream local up` first")
        record = state.get("services", {}).get(name)
        replaced = bool(record and _ours(record))
        if replaced:
            stop_pid(record["pid"])
        port = record["port"] if record else self._port(name)
        self._start_recorded(state, name, port)
        self._write_env(state)
        return replaced

    def env(self) -> dict[str, str]:
        state = self._load()
        if "api_key" not in state:
            raise RuntimeError("the local stack is not up: run `quotestream local up` first")
        return self._env(state.get("services", {}), state["api_key"])

    def _start_recorded(self, state: dict[str, Any], name: str, port: int) -> ServiceProcess:
        services = state.setdefault("services", {})
        # The gRPC port is kept across restarts too: running jobs write to it.
        grpc_port = services.get(name, {}).get("grpc_port")
        service = self._start(name, port, self._env(services, state["api_key"]), grpc_port)
        services[name] = {"pid": service.pid, "port": service.port, "log": str(service.log_path)}
        if service.grpc_port:
            services[name]["grpc_port"] = service.grpc_port
        self._save(state)
        return service

    def _write_env(self, state: dict[str, Any]) -> dict[str, str]:
        env = self._env(state.get("services", {}), state["api_key"])
        self.env_file.write_text(
            "# Written by `quotestream local up`. Load with: set -a; . .local/env; set +a\n"
            + "".join(f"{key}={value}\n" for key, value in env.items())
        )
        self.env_file.chmod(0o600)
        return env

    def down(self, say: Callable[[str], None] = print, only: Collection[str] = SERVICES) -> None:
        """Stop the parts (all by default, or `only` those), newest first."""
        state = self._load()
        services = state.get("services", {})
        for name in reversed(SERVICES):
            record = services.pop(name, None) if name in only else None
            if record is None:
                continue
            if _ours(record):
                stop_pid(record["pid"])
                say(f"{name:<9} stopped  pid {record['pid']}")
            else:
                say(f"{name:<9} was not running (pid {record['pid']} gone)")
        self._save(state)
        if not services:
            self.env_file.unlink(missing_ok=True)

    def status(self) -> list[ServiceStatus]:
        services = self._load().get("services", {})
        statuses = []
        for name in SERVICES:
            record = services.get(name)
            if record is None:
                statuses.append(ServiceStatus(name, None, None, False, None))
                continue
            alive = _ours(record)
            healthy = alive and self._healthy(name, record["port"])
            statuses.append(
                ServiceStatus(name, record["pid"], record["port"], healthy, record["log"])
            )
        return statuses

    def _start(
        self, name: str, port: int, env: dict[str, str], grpc_port: int | None
    ) -> ServiceProcess:
        log_path = self.logs_dir / f"{name}.log"
        if name == "pubsub":
            return start_pubsub_emulator(port, log_path, host=HOST)
        if name == "bigquery":
            return start_bigquery_emulator(
                self.repo_root,
                port,
                log_path,
                self.state_dir / "bigquery-data",
                self.project,
                grpc_port=grpc_port or self._free_or(PREFERRED_BIGQUERY_GRPC_PORT),
            )
        return start_api_process(port, log_path, env, HOST)

    def _healthy(self, name: str, port: int) -> bool:
        path = {
            "pubsub": "/",
            "bigquery": f"/bigquery/v2/projects/{self.project}/datasets",
            "api": "/health",
        }[name]
        return http_answers(f"http://{HOST}:{port}{path}")

    def _port(self, name: str) -> int:
        wanted = self.ports.get(name)
        if wanted is not None:
            if not port_is_free(wanted):
                raise RuntimeError(f"port {wanted} for {name} is taken; choose another")
            return wanted
        return self._free_or(PREFERRED_PORTS[name])

    def _free_or(self, preferred: int) -> int:
        if self._free_ports_only or not port_is_free(preferred):
            return free_port(HOST)
        return preferred

    def _env(self, services: dict[str, dict[str, Any]], api_key: str) -> dict[str, str]:
        def port(name: str) -> Any:
            return services.get(name, {}).get("port", "")

        return {
            "QUOTESTREAM_TARGET": "local",
            "QUOTESTREAM_PROJECT": self.project,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{port('pubsub')}",
            "BIGQUERY_EMULATOR_HOST": f"http://{HOST}:{port('bigquery')}",
            "BIGQUERY_STORAGE_EMULATOR_HOST": (
                f"{HOST}:{services.get('bigquery', {}).get('grpc_port', '')}"
            ),
            "QUOTESTREAM_API_URL": f"http://{HOST}:{port('api')}",
            "QUOTESTREAM_API_KEY": api_key,
            # The emulator cannot dead-letter from an ordered subscription.
            "QUOTESTREAM_MESSAGE_ORDERING": "false",
        }

    def _load(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            return {}
        loaded: dict[str, Any] = json.loads(self.state_file.read_text())
        return loaded

    def _save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))
        self.state_file.chmod(0o600)
