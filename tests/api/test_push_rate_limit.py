"""The per-client token bucket on POST /v1/quotes: a burst, then 429 with Retry-After and a
problem body until tokens refill; a client is the caller its relay key names, not the address
it comes from (behind Cloud Run, Google's front end for everyone); GET is not limited."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings
from quotestream_api.deps import get_push_limiter, now_ms
from quotestream_api.main import create_app
from quotestream_api.rate_limit import TokenBuckets
from tests.api.conftest import API_KEY
from tests.support.builders import NOW_MS, quote_dict
from tests.support.fakes import InMemoryPublisher

pytestmark = pytest.mark.unit

AUTH = {"X-API-Key": API_KEY}


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> TokenBuckets:
    return TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)


def limited_app(
    limiter: TokenBuckets, publisher: InMemoryPublisher, api_key: str = API_KEY
) -> TestClient:
    app = create_app(Settings(api_key=api_key), relay=QuoteRelay(publisher, "quotes", 100))
    app.dependency_overrides[now_ms] = lambda: NOW_MS
    app.dependency_overrides[get_push_limiter] = lambda: limiter
    return TestClient(app)


@pytest.fixture
def client(limiter: TokenBuckets) -> Iterator[TestClient]:
    with limited_app(limiter, InMemoryPublisher()) as test_client:
        yield test_client


def push(client: TestClient, headers: dict[str, str] = AUTH) -> int:
    return client.post("/v1/quotes", json=[quote_dict()], headers=headers).status_code


def test_a_burst_passes_then_429_with_retry_after_and_a_problem_body(client: TestClient) -> None:
    assert [push(client) for _ in range(3)] == [202, 202, 202]
    response = client.post("/v1/quotes", json=[quote_dict()], headers=AUTH)
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"  # half a second to the next token, rounded up
    body = response.json()
    assert (body["status"], body["reason"], body["title"]) == (
        429,
        "rate_limited",
        "Too Many Requests",
    )
    assert re.search(r"for key:[0-9a-f]{12};", body["detail"])
    assert API_KEY not in body["detail"]


def test_tokens_refill_at_the_rate_and_never_beyond_the_burst(
    client: TestClient, clock: ManualClock
) -> None:
    assert [push(client) for _ in range(4)] == [202, 202, 202, 429]
    clock.now += 0.5  # one token at 2 a second
    assert [push(client), push(client)] == [202, 429]
    clock.now += 3600  # a long pause refills up to the burst, not more
    assert [push(client) for _ in range(4)] == [202, 202, 202, 429]


def test_requests_without_a_valid_key_are_limited_by_address_apart_from_the_callers(
    client: TestClient,
) -> None:
    wrong = {"X-API-Key": "not-the-key-at-all"}
    assert [push(client, wrong) for _ in range(4)] == [401, 401, 401, 429]
    assert push(client, {}) == 429  # no key at all: the same address, the same bucket
    detail = client.post("/v1/quotes", json=[], headers=wrong).json()["detail"]
    assert "from testclient without a valid key" in detail
    # Guessing from the caller's own address does not spend the caller's bucket.
    assert [push(client) for _ in range(3)] == [202, 202, 202]


def test_two_callers_with_their_own_keys_from_one_address_have_their_own_buckets(
    limiter: TokenBuckets,
) -> None:
    first, second = "producer-one-key-0001", "producer-two-key-0002"
    with limited_app(limiter, InMemoryPublisher(), f"{first},{second}") as client:
        assert [push(client, {"X-API-Key": first}) for _ in range(4)] == [202, 202, 202, 429]
        assert [push(client, {"X-API-Key": second}) for _ in range(4)] == [202, 202, 202, 429]


def test_get_is_not_limited(client: TestClient) -> None:
    assert [push(client) for _ in range(4)][-1] == 429
    statuses = {client.get("/v1/quotes/latest").status_code for _ in range(20)}
    assert statuses == {200}


def test_each_client_has_its_own_bucket(limiter: TokenBuckets) -> None:
    assert [limiter.take("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("10.0.0.1") == pytest.approx(0.5)
    assert limiter.take("10.0.0.2") == 0.0


def test_the_least_recently_seen_client_is_forgotten_beyond_the_cap(clock: ManualClock) -> None:
    limiter = TokenBuckets(rate_per_s=1.0, burst=1, clock=clock, max_clients=2)
    assert limiter.take("a") == 0.0
    assert limiter.take("b") == 0.0
    assert limiter.take("a") > 0  # a is now the most recently seen
    assert limiter.take("c") == 0.0  # evicts b, not a
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0  # b comes back with a full bucket


def test_the_settings_configure_the_limit_and_zero_turns_it_off() -> None:
    publisher = InMemoryPublisher()
    defaults = create_app(Settings(api_key=API_KEY), relay=QuoteRelay(publisher, "quotes", 10))
    with TestClient(defaults):
        limiter = defaults.state.push_limiter
        assert (limiter.rate_per_s, limiter.burst) == (20.0, 40)
    # Room for all 60 pushes: a relay full of quotes not yet published answers 503 whatever
    # the limit (a busy machine publishes ten later than 60 pushes take).
    off = create_app(
        Settings(api_key=API_KEY, relay_rate_limit_per_s=0),
        relay=QuoteRelay(publisher, "quotes", 100),
    )
    off.dependency_overrides[now_ms] = lambda: NOW_MS
    with TestClient(off) as client:
        assert off.state.push_limiter is None
        assert {push(client) for _ in range(60)} == {202}


def test_an_impossible_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBuckets(rate_per_s=0, burst=1)
