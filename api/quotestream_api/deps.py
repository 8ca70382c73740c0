"""FastAPI dependencies: what a route needs, resolved from the app's state."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings
from quotestream_api.problems import Problem
from quotestream_api.rate_limit import TokenBuckets, retry_after_header


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


def get_push_limiter(request: Request) -> TokenBuckets | None:
    limiter: TokenBuckets | None = request.app.state.push_limiter
    return limiter


def limit_push_rate(
    request: Request,
    limiter: Annotated[TokenBuckets | None, Depends(get_push_limiter)],
) -> None:
    """Before the key check, so floods and key guessing are slowed down too. The client is
    the peer address, which uvicorn takes from X-Forwarded-For only for the proxies trusted
    by FORWARDED_ALLOW_IPS: a client cannot pick a fresh identity per request."""
    if limiter is None:
        return
    client = request.client.host if request.client else "unknown"
    wait_s = limiter.take(client)
    if wait_s:
        raise Problem(
            429,
            f"more than {limiter.burst} requests at once or {limiter.rate_per_s:g} a second "
            f"from {client}; retry after Retry-After seconds",
            reason="rate_limited",
            headers={"Retry-After": retry_after_header(wait_s)},
        )


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
