"""What an Airflow runtime makes of quotestream, run by that runtime's own Python (Composer's
3.1 on Python 3.11, the project's 3.3): it imports nothing of the tests, and prints one JSON
line. Airflow's environment (AIRFLOW_HOME, the DAGs and plugins folders) comes from the caller.

    python airflow_probe.py parse            DAG import errors and ids, the plugin, where
                                             quotestream was imported from
    python airflow_probe.py mount            the API server's app: the page answers a stranger
    python airflow_probe.py run DAG_ID [ISO] dag.test() of one DAG: each task's state
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _dagbag() -> Any:
    try:  # Airflow 3.2 and later
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    # AIRFLOW__CORE__LOAD_EXAMPLES=False keeps Airflow's examples out.
    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def _plugins() -> tuple[list[Any], dict[str, str]]:
    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
    if hasattr(plugins_manager, "_get_plugins"):  # Airflow 3.2 and later
        loaded, errors = plugins_manager._get_plugins()
        return list(loaded), dict(errors)
    return list(plugins_manager.plugins or []), dict(plugins_manager.import_errors)


def parse() -> dict[str, Any]:
    from airflow import __version__

    bag = _dagbag()
    plugins, plugin_errors = _plugins()
    ours = [plugin for plugin in plugins if plugin.name == "quotestream"]
    import quotestream

    return {
        "airflow": __version__,
        "python": ".".join(map(str, sys.version_info[:2])),
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": {path: error[-2000:] for path, error in bag.import_errors.items()},
        "plugin_errors": plugin_errors,
        "plugins": [str(plugin.source) for plugin in ours],
        "views": [view["href"] for plugin in ours for view in plugin.external_views],
        "quotestream": quotestream.__file__,
        "beam": "apache_beam" in sys.modules,
    }


def mount() -> dict[str, Any]:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    return {
        path: client.get(path).status_code for path in ("/quotestream/", "/quotestream/api/figures")
    }


def run(dag_id: str, logical_date: str | None) -> dict[str, Any]:
    import pendulum

    dag = _dagbag().get_dag(dag_id)
    kwargs = {"logical_date": pendulum.parse(logical_date)} if logical_date else {}
    dag_run = dag.test(**kwargs)
    return {
        "state": str(dag_run.state),
        "tasks": {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()},
    }


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "parse":
        result = parse()
    elif command == "mount":
        result = mount()
    else:
        result = run(rest[0], rest[1] if len(rest) > 1 else None)
    print("PROBE " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
