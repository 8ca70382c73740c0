"""The Airflow plugin of quotestream: the "Quotes pipeline" page in Airflow's navigation.

The quotestream wheel declares it under the `airflow.plugins` entry point, so Airflow loads it
from the installed package in every component (scheduler, DAG processor, triggerer, workers,
API server) with the plugins folder empty, as Composer 3 leaves it on its scheduler and
triggerer. It imports nothing at load: only the API server asks for the page's app, and
builds it then. The services behind the page are built on its first
request, from the same settings and composition root the DAG tasks use.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/quotestream"
# The DAGs whose work the page shows: the streaming jobs and their health, the quality checks
# and the gaps they find, the dead letters (payloads included) the replay re-drives. Whoever
# may not read all of them may not read the page.
PAGE_DAGS = (
    "quotestream_streaming",
    "quotestream_data_quality",
    "quotestream_replay_dead_letters",
)


def _build_service() -> Any:
    from quotestream import bootstrap
    from quotestream.settings import Settings

    return bootstrap.build_cockpit_service(Settings())


class QuotestreamCockpit(AirflowPlugin):
    name = "quotestream"
    external_views = [  # noqa: RUF012 - Airflow reads these attributes as declared
        {
            "name": "Quotes pipeline",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "quotes-pipeline",
        }
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Airflow's security module costs most of a second to import: only the API server,
        # which has it loaded already, reads this.
        from airflow.api_fastapi.core_api.security import requires_access_dag
        from fastapi import Depends

        from quotestream.entrypoints.cockpit import cockpit_app

        # Airflow mounts a plugin's app outside its own authorization, and a login alone would
        # show any user the pipeline: every route asks the auth manager, as Airflow's own
        # routes do, whether the user may read each of the page's DAGs (401 without a login,
        # 403 when refused).
        guards = [Depends(requires_access_dag("GET", param_dag_id=dag)) for dag in PAGE_DAGS]
        app = cockpit_app(_build_service, guards)
        return [{"app": app, "url_prefix": URL_PREFIX, "name": "Quotes pipeline"}]
