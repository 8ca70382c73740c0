"""The operator's page as a FastAPI app: the page itself and the JSON it refreshes from.

Airflow mounts it in its API server (see quotestream/entrypoints/airflow_plugin.py), where
the plugin guards every route with Airflow's own authorization; the service behind it is built
on the first request, not at import, so loading the plugin costs Airflow's start nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse

from quotestream.services.cockpit import CockpitService

PAGE = Path(__file__).with_name("cockpit_page.html")


class _ServiceOnce:
    """Builds the service on first use and keeps it; a build that fails is tried again on the
    next request (the page says why meanwhile)."""

    def __init__(self, build: Callable[[], CockpitService]) -> None:
        self._build = build
        self._service: CockpitService | None = None
        self._lock = threading.Lock()

    def __call__(self) -> CockpitService:
        with self._lock:
            if self._service is None:
                self._service = self._build()
            return self._service


def cockpit_service(request: Request) -> CockpitService:
    try:
        service: CockpitService = request.app.state.cockpit()
    except Exception as error:  # the page shows it: misconfiguration is an operator's fix
        raise HTTPException(503, f"the pipeline cannot be read: {error}") from error
    return service


CockpitDep = Annotated[CockpitService, Depends(cockpit_service)]

router = APIRouter()


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return _page()


@router.get("/api/figures")
def figures(
    cockpit: CockpitDep, pair: Annotated[str | None, Query(max_length=16)] = None
) -> dict[str, Any]:
    """Everything the page shows, for scripts: jobs, flow, freshness, dead letters, quality,
    and the 1-minute bars of `pair` over the last hour."""
    try:
        result = cockpit.figures(pair)
    except ValueError as error:
        raise HTTPException(422, str(error)) from error
    return {"pairs": cockpit.pairs, **result.as_json()}


def cockpit_app(
    build_service: Callable[[], CockpitService], dependencies: Sequence[DependsParam] = ()
) -> FastAPI:
    """The app; `dependencies` guard every route (Airflow's authentication, when mounted)."""
    app = FastAPI(
        title="quotestream cockpit",
        dependencies=list(dependencies),
        # FastAPI serves its schema routes past app-level dependencies: none, then.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.cockpit = _ServiceOnce(build_service)
    app.include_router(router)
    return app
