from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import format_ts
from tests.support.builders import NOW_MS

pytestmark = pytest.mark.unit


def test_pairs_lists_the_configured_pairs(client: TestClient) -> None:
    body = client.get("/v1/pairs").json()
    assert [p["pair"] for p in body] == list(PAIR_CATALOG)
    assert body[0] == {
        "pair": "USD-BRL",
        "base": "USD",
        "quote_currency": "BRL",
        "scale": 4,
        "tick_interval_ms": 1000,
    }


def test_latest_serves_the_simulated_quote_in_the_gates_representation(client: TestClient) -> None:
    response = client.get("/v1/quotes/latest", params={"pairs": "usd-brl,BTC-USD"})
    assert response.status_code == 200
    quotes = response.json()["quotes"]
    market = MarketSimulator(11, PAIR_CATALOG)
    assert quotes == [
        market.latest(PAIR_CATALOG["USD-BRL"], NOW_MS).to_dict(),
        market.latest(PAIR_CATALOG["BTC-USD"], NOW_MS).to_dict(),
    ]
    for quote in quotes:
        parse_quote(json.dumps(quote).encode(), now_ms=NOW_MS)


def test_latest_rejects_an_unknown_pair_with_a_problem(client: TestClient) -> None:
    response = client.get("/v1/quotes/latest", params={"pairs": "USD-BRL,XAU-USD"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "unknown_pair"
    assert "XAU-USD" in response.json()["detail"]


def walk_history(client: TestClient, **params: object) -> list[dict[str, str]]:
    quotes: list[dict[str, str]] = []
    token = None
    while True:
        response = client.get(
            "/v1/quotes", params={**params, "page_token": token} if token else params
        )
        assert response.status_code == 200, response.text
        body = response.json()
        quotes += body["quotes"]
        token = body["next_page_token"]
        if token is None:
            return quotes


def test_history_pages_add_up_to_the_interval_and_repeat_exactly(client: TestClient) -> None:
    start, end = format_ts(NOW_MS - 600_000), format_ts(NOW_MS - 300_000)
    params = {"pair": "EUR-USD", "start": start, "end": end, "page_size": 97}
    first = walk_history(client, **params)
    again = walk_history(client, **params)
    assert first == again
    market = MarketSimulator(11, PAIR_CATALOG)
    expected = [
        q.to_dict()
        for _, q in market.quotes_between(
            PAIR_CATALOG["EUR-USD"], NOW_MS - 600_000, NOW_MS - 300_000
        )
    ]
    assert first == expected
    assert len(first) == 600
    assert len({q["event_id"] for q in first}) == 600


def test_history_stops_at_now(client: TestClient) -> None:
    quotes = walk_history(
        client,
        pair="USD-BRL",
        start=format_ts(NOW_MS - 10_000),
        end=format_ts(NOW_MS + 3_600_000),
        page_size=1000,
    )
    assert quotes[-1]["event_ts"] <= format_ts(NOW_MS)
    assert len(quotes) in (10, 11)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (
            {"pair": "USD-BRL", "start": "2026-11-18T10:00:00Z", "end": "2026-11-18T09:00:00Z"},
            "bad_range",
        ),
        (
            {"pair": "USD-BRL", "start": "2026-11-16T10:00:00Z", "end": "2026-11-18T10:00:00Z"},
            "range_too_large",
        ),
        (
            {"pair": "USD-BRL", "start": "2026-11-18T09:00:00", "end": "2026-11-18T10:00:00Z"},
            "naive_timestamp",
        ),
        (
            {"pair": "NOPE", "start": "2026-11-18T09:00:00Z", "end": "2026-11-18T10:00:00Z"},
            "unknown_pair",
        ),
        (
            {"pair": "USD-BRL", "start": "yesterday", "end": "2026-11-18T10:00:00Z"},
            "invalid_request",
        ),
        (
            {
                "pair": "USD-BRL",
                "start": "2026-11-18T09:00:00Z",
                "end": "2026-11-18T10:00:00Z",
                "page_size": 5000,
            },
            "invalid_request",
        ),
        (
            {
                "pair": "USD-BRL",
                "start": "2026-11-18T09:00:00Z",
                "end": "2026-11-18T10:00:00Z",
                "page_token": "garbage!",
            },
            "bad_page_token",
        ),
        (
            {
                "pair": "USD-BRL",
                "start": "2026-11-18T09:00:00Z",
                "end": "2026-11-18T10:00:00Z",
                "page_token": "W1tb" * 40,
            },
            "bad_page_token",
        ),
        (
            {
                "pair": "USD-BRL",
                "start": "9999-12-31T20:00:00Z",
                "end": "9999-12-31T23:59:59-05:00",
            },
            "bad_range",
        ),
        (
            {
                "pair": "USD-BRL",
                "start": "0001-01-01T00:00:00+05:00",
                "end": "0001-01-01T10:00:00Z",
            },
            "bad_range",
        ),
    ],
)
def test_history_rejects_bad_queries_with_a_reason(
    client: TestClient, params: dict[str, object], reason: str
) -> None:
    response = client.get("/v1/quotes", params=params)
    assert response.status_code == 422
    assert response.json()["reason"] == reason


def test_a_page_token_cannot_be_replayed_against_another_query(client: TestClient) -> None:
    params = {
        "pair": "USD-BRL",
        "start": format_ts(NOW_MS - 60_000),
        "end": format_ts(NOW_MS),
        "page_size": 10,
    }
    token = client.get("/v1/quotes", params=params).json()["next_page_token"]
    other = {**params, "pair": "EUR-BRL", "page_token": token}
    response = client.get("/v1/quotes", params=other)
    assert response.status_code == 422
    assert "another query" in response.json()["detail"]


def test_health_and_readiness(client: TestClient, publisher) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    publisher.reachable = False
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["reason"] == "not_ready"


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/pairs", "/v1/quotes", "/v1/quotes/latest", "/health", "/ready"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_no_route_ends_in_z_which_cloud_runs_front_end_may_answer_itself(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert [path for path in paths if path.endswith("z")] == []
