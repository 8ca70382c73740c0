"""Airflow finds the cockpit page's plugin in the installed package (its `airflow.plugins`
entry point) with the plugins folder empty, as Composer 3 leaves it on the scheduler and the
triggerer: the plugin registers the page, and loading it imports nothing of the core beyond
the plugin module, nor Beam, nor a Google client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quotestream_dev.local_airflow import deployed_layout
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

LOAD_PLUGINS = """
import json, sys, time
from airflow import plugins_manager
started = time.perf_counter()
plugins_manager.ensure_plugins_loaded()
took = time.perf_counter() - started
print(json.dumps({
    "errors": plugins_manager.get_import_errors(),
    "plugins": sorted(plugin.name for plugin in plugins_manager._get_plugins()[0]),
    "core_modules": sorted(name for name in sys.modules if name.startswith("quotestream.")),
    "beam": "apache_beam" in sys.modules,
    "google_cloud": sorted(name for name in sys.modules if name.startswith("google.cloud.")),
    "fastapi_apps": [app["url_prefix"] for app in plugins_manager.get_fastapi_plugins()[0]],
    "views": [view["href"] for view in plugins_manager._get_ui_plugins()[0]],
    "seconds": took,
}))
"""


def test_the_plugin_loads_from_the_package_with_the_plugins_folder_empty(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **deployed_layout(REPO, home),
    }
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_PLUGINS],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"plugin loading: {loaded['seconds'] * 1000:.0f} ms")
    assert list((home / "plugins").iterdir()) == []
    assert loaded["errors"] == {}
    assert loaded["plugins"] == ["quotestream"]
    assert loaded["fastapi_apps"] == ["/quotestream"]
    assert loaded["views"] == ["/quotestream/"]
    # The page's services are built on its first request: loading costs no client import.
    assert loaded["core_modules"] == [
        "quotestream.entrypoints",
        "quotestream.entrypoints.airflow_plugin",
    ]
    assert loaded["beam"] is False
    assert loaded["google_cloud"] == []
