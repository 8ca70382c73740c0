"""Airflow on loopback for the local target: `airflow standalone` with the project's DAGs, and
the few REST calls the demo makes (unpause, trigger, wait), as an operator would in the UI.

Its home is `<state>/airflow` (SQLite metadata, logs, the admin password); the DAG tasks
inherit the environment they are started with, so they reach the same emulators.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from quotestream.adapters.local.processes import (
    ServiceProcess,
    free_port,
    http_answers,
    start_service,
)

HOST = "127.0.0.1"
USER = "admin"
FINISHED = {"success", "failed"}


def deployed_layout(repo_root: Path, airflow_home: Path) -> dict[str, str]:
    """Airflow's folders as Composer 3 lays them out: the repository's dags/ as the DAGs
    folder and an empty plugins folder of Airflow's own, as Composer 3's scheduler and
    triggerer have it. quotestream comes from the installed package, its cockpit plugin
    through the package's `airflow.plugins` entry point; nothing is added to PYTHONPATH."""
    plugins = airflow_home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
    }


class AirflowError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LocalAirflow:
    def __init__(self, home: Path, repo_root: Path, port: int | None = None) -> None:
        self.home = home
        self.repo_root = repo_root
        self.port = port or free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.passwords_file = home / "passwords.json"
        self._token: str | None = None

    @property
    def password(self) -> str:
        """The admin password, made once per home and kept there (mode 0600)."""
        if not self.passwords_file.is_file():
            self.home.mkdir(parents=True, exist_ok=True)
            # Created private: never readable by others, not even for a moment.
            descriptor = os.open(self.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as passwords:
                json.dump({USER: secrets.token_urlsafe(12)}, passwords)
        return str(json.loads(self.passwords_file.read_text())[USER])

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        _ = self.password  # the file must exist before the auth manager reads it
        return {
            **extra,
            # standalone starts its components as `airflow ...` from PATH.
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            **deployed_layout(self.repo_root, self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        }

    def start(self, env: Mapping[str, str], timeout: float = 180.0) -> ServiceProcess:
        """Start standalone (a session of its own, stopped as a group) and wait for its API."""
        return start_service(
            "airflow",
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            host=HOST,
            port=self.port,
            log_path=self.home / "standalone.log",
            ready=lambda: http_answers(f"{self.url}/api/v2/monitor/health") and self._healthy(),
            env=self.environment(env),
            timeout=timeout,
        )

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120.0) -> None:
        """Until the DAG processor has parsed each of them (the API answers 404 before)."""
        waiting = list(dag_ids)
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = [dag_id for dag_id in waiting if not self._exists(dag_id)]
            if waiting and time.monotonic() > deadline:
                raise AirflowError(f"DAGs not parsed within {timeout:.0f} s: {waiting}")
            if waiting:
                time.sleep(1)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """A manual run now; returns its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return str(run["dag_run_id"])

    def wait(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 300.0,
        progress: Callable[[str], None] = lambda _: None,
    ) -> str:
        """Until the run finishes; returns its state. Each task's new state goes to `progress`."""
        seen: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            instances = self._request(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
            )["task_instances"]
            for instance in instances:
                state = instance.get("state") or "none"
                if seen.get(instance["task_id"]) != state:
                    seen[instance["task_id"]] = state
                    progress(f"{dag_id}.{instance['task_id']}: {state}")
            if run["state"] in FINISHED:
                return str(run["state"])
            time.sleep(1)
        raise AirflowError(f"{dag_id} run {run_id} did not finish within {timeout:.0f} s")

    @property
    def pipeline_page(self) -> str:
        """The "Quotes pipeline" page of the project's plugin."""
        return f"{self.url}/quotestream/"

    def pipeline_figures(self, timeout: float = 120.0) -> dict[str, Any]:
        """What that page shows, from the JSON behind it, once a reading of this moment has
        finished (the page serves stale or pending figures while one runs)."""
        deadline = time.monotonic() + timeout
        while True:
            figures: dict[str, Any] = self._request("GET", "/quotestream/api/figures")
            if not figures["stale"]:
                return figures
            if time.monotonic() > deadline:
                raise AirflowError(
                    f"the page's figures were still being read after {timeout:.0f} s"
                )
            time.sleep(1)

    def _healthy(self) -> bool:
        try:
            health = self._request("GET", "/api/v2/monitor/health", auth=False)
        except (OSError, AirflowError):
            return False
        components = ("metadatabase", "scheduler", "dag_processor")
        return all(health.get(name, {}).get("status") == "healthy" for name in components)

    def _exists(self, dag_id: str) -> bool:
        try:
            self._request("GET", f"/api/v2/dags/{dag_id}")
        except AirflowError as error:
            if error.status == 404:
                return False
            raise
        return True

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._bearer()}"
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise AirflowError(
                f"{method} {path}: HTTP {error.code} {detail}", error.code
            ) from error

    def _bearer(self) -> str:
        if self._token is None:
            token = self._request(
                "POST", "/auth/token", {"username": USER, "password": self.password}, auth=False
            )
            self._token = str(token["access_token"])
        return self._token
