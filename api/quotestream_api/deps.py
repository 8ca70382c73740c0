"""FastAPI dependencies: what a route needs, resolved from the app's state."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a push, as the relay key it presented names it: a digest of the key, never
    the key, so it can appear in answers and logs."""

    id: str


def push_caller(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> Caller | None:
    """The caller whose X-API-Key is one of the relay's keys; None for any other request."""
    given = (x_api_key or "").encode()
    matched = None
    for key in settings.relay_keys():
        # Constant-time, and every key compared: neither how much of a guess was right nor
        # which key it resembled may show in the time taken.
        if hmac.compare_digest(given, key.encode()):
            matched = key
    if matched is None:
        return None
    return Caller("key:" + hashlib.sha256(matched.encode()).hexdigest()[:12])


CallerDep = Annotated[Caller | None, Depends(push_caller)]


def limit_push_rate(
    request: Request,
    limiter: Annotated[TokenBuckets | None, Depends(get_push_limiter)],
    caller: CallerDep,
) -> None:
    """Before the key is required, so floods and key guessing are slowed down too.

    A caller with a valid key has a bucket of its own, whatever address it comes from: behind
    Cloud Run every request arrives from Google's front end, so the address would put every
    producer in one bucket. Anything else is limited by the peer address, as uvicorn reports
    it: it honours X-Forwarded-For only from FORWARDED_ALLOW_IPS (default 127.0.0.1), which
    must never trust more than Cloud Run's front end, since every earlier entry of the header
    is the client's to write. On Cloud Run that leaves the front end's address: the requests
    without a valid key share one bucket per instance, which slows guessing and never touches
    a keyed producer's bucket."""
    if limiter is None:
        return
    if caller is not None:
        bucket, who = caller.id, f"for {caller.id}"
    else:
        address = request.client.host if request.client else "unknown"
        bucket, who = f"peer:{address}", f"from {address} without a valid key"
    wait_s = limiter.take(bucket)
    if wait_s:
        raise Problem(
            429,
            f"more than {limiter.burst} requests at once or {limiter.rate_per_s:g} a second "
            f"{who}; retry after Retry-After seconds",
            reason="rate_limited",
            headers={"Retry-After": retry_after_header(wait_s)},
        )


def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)], caller: CallerDep
) -> Caller:
    if settings.api_key is None:
        raise Problem(
            503,
            "the push relay is disabled: the server has no API key (set QUOTESTREAM_API_KEY)",
            reason="relay_disabled",
        )
    if caller is None:
        raise Problem(
            401,
            "missing or wrong X-API-Key header",
            reason="unauthorized",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return caller


SettingsDep = Annotated[Settings, Depends(get_settings)]
MarketDep = Annotated[MarketSimulator, Depends(get_market)]
RelayDep = Annotated[QuoteRelay, Depends(get_relay)]
NowDep = Annotated[int, Depends(now_ms)]
