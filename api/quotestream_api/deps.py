"""FastAPI dependencies: what a route needs, resolved from the app's state."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from quotestream.domain.quote import now_ms
from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings
from quotestream_api.market import MarketSimulator
from quotestream_api.problems import Problem


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_market(request: Request) -> MarketSimulator:
    market: MarketSimulator = request.app.state.market
    return market


def get_relay(request: Request) -> QuoteRelay:
    relay: QuoteRelay | None = request.app.state.relay
    if relay is None:
        raise Problem(
            503,
            f"the push relay is unavailable: {request.app.state.relay_error}",
            reason="relay_unavailable",
        )
    return relay


def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    if settings.api_key is None:
        raise Problem(
            503,
            "the push relay is disabled: the server has no API key (set QUOTESTREAM_API_KEY)",
            reason="relay_disabled",
        )
    expected = settings.api_key.get_secret_value().encode()
    given = (x_api_key or "").encode()
    # Constant-time: the comparison must not reveal how much of a guess was right.
    if not hmac.compare_digest(given, expected):
        raise Problem(
            401,
            "missing or wrong X-API-Key header",
            reason="unauthorized",
            headers={"WWW-Authenticate": "ApiKey"},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
MarketDep = Annotated[MarketSimulator, Depends(get_market)]
RelayDep = Annotated[QuoteRelay, Depends(get_relay)]
NowDep = Annotated[int, Depends(now_ms)]
