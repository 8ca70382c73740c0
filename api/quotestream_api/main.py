"""The app factory and the server entry point (`quotestream api`, the Cloud Run command)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from quotestream import bootstrap
from quotestream.domain.market import MarketSimulator
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings
from quotestream_api.openapi import describe
from quotestream_api.problems import install_problem_handlers
from quotestream_api.rate_limit import TokenBuckets
from quotestream_api.routers import health, pairs, quotes

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, relay: QuoteRelay | None = None) -> FastAPI:
    """Build the app. Tests pass a relay over a fake publisher; production builds the relay
    from settings at startup, so nothing connects to anything at import time."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or Settings()
        app.state.settings = resolved
        app.state.market = MarketSimulator(
            resolved.market_seed,
            {pair: PAIR_CATALOG[pair] for pair in resolved.pairs},
            source=resolved.quote_source,
        )
        app.state.push_limiter = (
            TokenBuckets(resolved.relay_rate_limit_per_s, resolved.relay_rate_limit_burst)
            if resolved.relay_rate_limit_per_s > 0
            else None
        )
        app.state.relay, app.state.relay_error = relay, None
        if app.state.relay is None:
            try:
                app.state.relay = bootstrap.build_relay(resolved)
            except bootstrap.ConfigurationError as error:
                # The market endpoints still serve; the push relay and /ready say why not.
                app.state.relay_error = str(error)
                log.warning("push relay disabled: %s", error)
        if app.state.relay is not None:
            app.state.relay.start()
        yield
        if app.state.relay is not None:
            # Runs on SIGTERM after in-flight requests finish: publish all that was accepted.
            app.state.relay.close(timeout=resolved.relay_shutdown_timeout_s)

    app = FastAPI(
        title="quotestream market-data API",
        version="1.0.0",
        description="Deterministic simulated currency quotes, and a push relay to Pub/Sub.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    describe(app)
    app.include_router(health.router)
    app.include_router(pairs.router)
    app.include_router(quotes.router)
    return app


def serve(host: str, port: int) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(), host=host, port=port, log_level="info", access_log=False)
