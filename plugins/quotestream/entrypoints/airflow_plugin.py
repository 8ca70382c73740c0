"""The Airflow plugin of quotestream: the "Quotes pipeline" page in Airflow's navigation.

Airflow imports this file from its plugins folder in every component (scheduler, DAG
processor, workers, API server), so it imports nothing at load: only the API server asks for
the page's app, and builds it then. The services behind the page are built on its first
request, from the same settings and composition root the DAG tasks use.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/quotestream"


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
        from airflow.api_fastapi.core_api.security import requires_authenticated
        from fastapi import Depends

        from quotestream.entrypoints.cockpit import cockpit_app

        # A plugin's app is not behind Airflow's login by itself: every route requires a user.
        app = cockpit_app(_build_service, [Depends(requires_authenticated())])
        return [{"app": app, "url_prefix": URL_PREFIX, "name": "Quotes pipeline"}]
