from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient

from quotestream.domain import parse_quote
from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings
from quotestream_api.deps import now_ms
from quotestream_api.main import create_app
from tests.api.conftest import API_KEY
from tests.support.builders import NOW_MS, quote_dict
from tests.support.fakes import GatedPublisher, InMemoryPublisher

pytestmark = pytest.mark.unit

AUTH = {"X-API-Key": API_KEY}


def good(i: int) -> dict[str, str]:
    return quote_dict(event_ts_ms=NOW_MS - 10_000 + i)


def test_a_mixed_batch_publishes_the_good_and_reports_the_bad_by_index(
    client: TestClient, publisher: InMemoryPublisher
) -> None:
    batch = [good(0), quote_dict(bid="6.0000"), good(1), "not an object", {**good(2), "x": 1}]
    response = client.post("/v1/quotes", json=batch, headers=AUTH)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == 3
    assert [(r["index"], r["reason"]) for r in body["rejections"]] == [
        (1, "crossed_market"),
        (3, "not_an_object"),
        (4, "unexpected_field"),
    ]
    client.app.state.relay.close(timeout=5)
    published = [parse_quote(m.data, m.attributes, now_ms=NOW_MS) for m in publisher.messages]
    assert [q.event_id for q in published] == [good(0)["event_id"], good(1)["event_id"]]
    assert all(m.topic == "quotes" for m in publisher.messages)


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEY + "x"}])
def test_the_push_endpoint_needs_the_key(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1/quotes", json=[good(0)], headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == "unauthorized"


def test_without_a_configured_key_the_relay_refuses_everything(
    publisher: InMemoryPublisher,
) -> None:
    settings = Settings(api_key=None)
    app = create_app(settings, relay=QuoteRelay(publisher, "quotes", 10))
    with TestClient(app) as client:
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "None"}):
            response = client.post("/v1/quotes", json=[good(0)], headers=headers)
            assert response.status_code == 503
            assert response.json()["reason"] == "relay_disabled"
    assert publisher.messages == []


def test_oversized_bodies_get_413(client: TestClient) -> None:
    body = json.dumps([good(i) for i in range(45)]).encode()
    assert len(body) > 10_000
    response = client.post(
        "/v1/quotes", content=body * 2, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["reason"]) == (413, "body_too_large")
    assert problem["title"] == HTTPStatus(413).phrase
    assert "20000" in problem["detail"]


def test_chunked_bodies_over_the_limit_get_413_too(client: TestClient) -> None:
    chunks = (b" " * 5_000 for _ in range(5))
    response = client.post("/v1/quotes", content=chunks, headers=AUTH)
    assert response.status_code == 413


def test_batches_over_the_item_limit_get_413(client: TestClient) -> None:
    response = client.post("/v1/quotes", json=[{}] * 51, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["reason"] == "batch_too_large"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\xff\xfe", "bad_encoding"), (b"[{]", "malformed_json"), (b'{"a": 1}', "not_an_array")],
)
def test_an_unreadable_body_is_a_400_with_a_reason(
    client: TestClient, content: bytes, reason: str
) -> None:
    response = client.post("/v1/quotes", content=content, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["reason"] == reason


def test_a_full_queue_answers_503_and_keeps_what_it_accepted() -> None:
    publisher = GatedPublisher()
    settings = Settings(api_key=API_KEY, relay_capacity=5, relay_max_batch=5)
    app = create_app(settings, relay=QuoteRelay(publisher, "quotes", 5))
    app.dependency_overrides[now_ms] = lambda: NOW_MS
    with TestClient(app) as client:
        assert (
            client.post("/v1/quotes", json=[good(i) for i in range(4)], headers=AUTH).status_code
            == 202
        )
        full = client.post("/v1/quotes", json=[good(i) for i in range(4, 6)], headers=AUTH)
        assert full.status_code == 503
        assert full.json()["reason"] == "queue_full"
        assert full.headers["retry-after"] == "1"
        publisher.release()
    # Leaving the client ran the shutdown: everything accepted was published.
    assert len(publisher.messages) == 4
