"""Airflow loads the plugins folder as shipped (what Composer and docker-compose point it at)
and nothing breaks: the one plugin module registers the cockpit page, and the core stays a
package that the DAG tasks import, never a pile of top-level plugin modules (its
local/airflow.py once replaced `airflow` itself)."""

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
plugins_folder = sys.argv[1]
print(json.dumps({
    "airflow": sys.modules["airflow"].__file__,
    "errors": plugins_manager.get_import_errors(),
    "from_plugins_folder": sorted(
        name for name, module in list(sys.modules.items())
        if "." not in name
        and str(getattr(module, "__file__", "") or "").startswith(plugins_folder)
        and name != "quotestream"
    ),
    "beam": "apache_beam" in sys.modules,
    "google_cloud": sorted(name for name in sys.modules if name.startswith("google.cloud.")),
    "fastapi_apps": [app["url_prefix"] for app, _ in [plugins_manager.get_fastapi_plugins()]
                     for app in app],
    "views": [view["href"] for view in plugins_manager._get_ui_plugins()[0]],
    "seconds": took,
}))
"""


def _load_plugins(tmp_path: Path, plugins_folder: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **deployed_layout(REPO),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
    }
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_PLUGINS, str(plugins_folder)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_loading_the_shipped_plugins_folder_imports_no_module_of_the_core(
    tmp_path: Path,
) -> None:
    shipped = _load_plugins(tmp_path, REPO / "plugins")
    empty = tmp_path / "empty-plugins"
    empty.mkdir()
    baseline = _load_plugins(tmp_path, empty)

    print(
        f"plugin loading: {shipped['seconds'] * 1000:.0f} ms with plugins/, "
        f"{baseline['seconds'] * 1000:.0f} ms with an empty folder"
    )
    assert shipped["airflow"] == baseline["airflow"]
    assert "site-packages" in str(shipped["airflow"])
    assert shipped["errors"] == {}
    assert shipped["from_plugins_folder"] == ["quotestream_cockpit"]
    assert shipped["fastapi_apps"] == ["/quotestream"]
    assert shipped["views"] == ["/quotestream/"]
    # The page's services are built on its first request: loading costs no client import.
    assert shipped["beam"] is False
    assert shipped["google_cloud"] == baseline["google_cloud"]


def test_without_the_ignore_file_the_loader_imports_every_core_file_again_and_beam(
    tmp_path: Path,
) -> None:
    """What the ignore file prevents, so a test fails if it stops preventing it."""
    copy = tmp_path / "plugins"
    subprocess.run(["cp", "-r", str(REPO / "plugins"), str(copy)], check=True)
    (copy / ".airflowignore").unlink()

    loaded = _load_plugins(tmp_path, copy)

    core_files = {path.stem for path in (REPO / "plugins" / "quotestream").rglob("*.py")}
    assert core_files <= set(loaded["from_plugins_folder"])  # type: ignore[call-overload]
    assert loaded["beam"] is True
