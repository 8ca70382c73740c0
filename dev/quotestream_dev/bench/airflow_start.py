"""`quotestream bench airflow`: how long Airflow's API server takes to answer with the cockpit
page's plugin, as the installed package declares it (its `airflow.plugins` entry point), and
without it, run after run in turn on one metadata database and an empty plugins folder."""

from __future__ import annotations

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

# Started first in every Python of the baseline server (PYTHONPATH), it hides quotestream's
# distribution from importlib.metadata, so Airflow finds no entry point of it.
HIDE_THE_PLUGIN = """
import importlib.metadata as metadata

_distributions = metadata.distributions


def _without_quotestream(**kwargs):
    return (d for d in _distributions(**kwargs) if d.metadata["Name"] != "quotestream")


metadata.distributions = _without_quotestream
"""


def run(runs: int, repo_root: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as scratch:
        home = Path(scratch) / "airflow"
        hiding = Path(scratch) / "hide-the-plugin"
        hiding.mkdir()
        (hiding / "sitecustomize.py").write_text(HIDE_THE_PLUGIN)
        env = _environment(home, repo_root)
        variants = {
            "without the plugin": {**env, "PYTHONPATH": str(hiding)},
            "with the plugin": env,
        }
        print("==> a metadata database for both (airflow db migrate)", flush=True)
        subprocess.run(  # noqa: S603 - our own venv's airflow
            [_airflow(), "db", "migrate"], env=env, check=True, capture_output=True
        )
        seconds: dict[str, list[float]] = {label: [] for label in variants}
        # Where the page is mounted it refuses a stranger (401); elsewhere the UI's catch-all
        # answers the path with its own page.
        mounted = {"without the plugin": False, "with the plugin": True}
        for attempt in range(1, runs + 1):
            for label, variant in variants.items():
                log = home / f"api-{label.replace(' ', '-')}-{attempt}.log"
                took = _start_once(variant, log, mounted[label])
                seconds[label].append(took)
                print(f"  run {attempt}: {label:<20} answered in {took:.2f} s", flush=True)
    base = percentile(seconds["without the plugin"], 0.5)
    with_plugin = percentile(seconds["with the plugin"], 0.5)
    print(f"\nAPI server start, median of {runs}:")
    print(f"  without the plugin  {base:.2f} s")
    print(f"  with the plugin     {with_plugin:.2f} s  ({with_plugin / base:.2f}x)")
    return 0


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _environment(home: Path, repo_root: Path) -> dict[str, str]:
    """Airflow laid out as Composer 3 lays it out."""
    return {
        **deployed_layout(repo_root, home),
        "AIRFLOW_HOME": str(home),
        # Its own database, whatever the caller's environment names.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    }


def _start_once(env: dict[str, str], log: Path, mounted: bool) -> float:
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
        env=env,
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
