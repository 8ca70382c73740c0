from __future__ import annotations

from fastapi import APIRouter, Request

from quotestream_api.problems import Problem
from quotestream_api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def liveness() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"description": "not ready"}})
def readiness(request: Request) -> Health:
    relay = request.app.state.relay
    if relay is None:
        raise Problem(503, f"no publisher: {request.app.state.relay_error}", reason="not_ready")
    if not relay.alive:
        raise Problem(503, "the relay worker is not running", reason="not_ready")
    try:
        relay.ping(timeout=2.0)
    except ConnectionError as error:
        raise Problem(503, str(error), reason="not_ready") from None
    return Health(status="ready")
