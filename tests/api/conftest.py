from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings
from quotestream_api.deps import now_ms
from quotestream_api.main import create_app
from tests.support.builders import NOW_MS
from tests.support.fakes import InMemoryPublisher

API_KEY = "test-key-not-a-secret"


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        api_key=API_KEY,
        market_seed=11,
        relay_capacity=100,
        relay_max_batch=50,
        relay_max_body_bytes=20_000,
        # Property tests send hundreds of requests from one client; the limit has its own tests.
        relay_rate_limit_per_s=0,
    )


@pytest.fixture
def client(settings: Settings, publisher: InMemoryPublisher) -> Iterator[TestClient]:
    relay = QuoteRelay(publisher, settings.quotes_topic, settings.relay_capacity)
    app = create_app(settings, relay=relay)
    app.dependency_overrides[now_ms] = lambda: NOW_MS
    with TestClient(app) as test_client:
        yield test_client
