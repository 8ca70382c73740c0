"""`quotestream bench airflow`: how long Airflow's API server takes to answer, with the
project's plugins folder as it ships (the cockpit page's plugin in it) and with the same
folder without the plugin, run after run in turn on one metadata database."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from quotestream.adapters.local.processes import free_port, http_answers, start_service
from quotestream_dev.local_airflow import HOST, deployed_layout
from quotestream_dev.stats import percentile

PLUGIN_FILE = "quotestream_cockpit.py"


def run(runs: int, repo_root: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as scratch:
        home = Path(scratch) / "airflow"
        without = _plugins_without_the_plugin(repo_root / "plugins", Path(scratch) / "plugins")
        folders = {"without the plugin": without, "with the plugin": repo_root / "plugins"}
        env = _environment(home, repo_root)
        print("==> a metadata database for both (airflow db migrate)", flush=True)
        subprocess.run(  # noqa: S603 - our own venv's airflow
            [_airflow(), "db", "migrate"],
            env={**env, "AIRFLOW__CORE__PLUGINS_FOLDER": str(without)},
            check=True,
            capture_output=True,
        )
        seconds: dict[str, list[float]] = {label: [] for label in folders}
        # Where the page is mounted it refuses a stranger (401); elsewhere the UI's catch-all
        # answers the path with its own page.
        mounted = {"without the plugin": False, "with the plugin": True}
        for attempt in range(1, runs + 1):
            for label, folder in folders.items():
                log = home / f"api-{label.replace(' ', '-')}-{attempt}.log"
                took = _start_once(env, folder, log, mounted[label])
                seconds[label].append(took)
                print(f"  run {attempt}: {label:<20} answered in {took:.2f} s", flush=True)
    base = percentile(seconds["without the plugin"], 0.5)
    with_plugin = percentile(seconds["with the plugin"], 0.5)
    print(f"\nAPI server start, median of {runs}:")
    print(f"  without the plugin  {base:.2f} s")
    print(f"  with the plugin     {with_plugin:.2f} s  ({with_plugin / base:.2f}x)")
    return 0


def _plugins_without_the_plugin(shipped: Path, copy: Path) -> Path:
    shutil.copytree(shipped, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / PLUGIN_FILE).unlink()
    return copy


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _environment(home: Path, repo_root: Path) -> dict[str, str]:
    """Airflow laid out as shipped (each start then names its own plugins folder)."""
    return {
        **deployed_layout(repo_root),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    }


def _start_once(env: dict[str, str], plugins: Path, log: Path, mounted: bool) -> float:
    """Seconds until the API server answers; checks the page is mounted or not, as expected."""
    port = free_port(HOST)
    started = time.monotonic()
    server = start_service(
        "airflow api-server",
        [_airflow(), "api-server", "--host", HOST, "--port", str(port)],
        host=HOST,
        port=port,
        log_path=log,
        ready=lambda: http_answers(f"http://{HOST}:{port}/api/v2/monitor/health"),
        env={**env, "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins)},
        timeout=180,
    )
    took = time.monotonic() - started
    try:
        status = _status(f"http://{HOST}:{port}/quotestream/api/figures")
    finally:
        server.stop()
    if (status == 401) != mounted:
        raise RuntimeError(f"the page answered {status} with mounted={mounted}; see {log}")
    return took


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
