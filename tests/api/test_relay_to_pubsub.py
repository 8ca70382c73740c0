"""The API as Cloud Run runs it (a server process) relaying to the real Pub/Sub emulator."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from quotestream.adapters.local.processes import ServiceProcess, free_port, start_api_process
from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from tests.support.pubsub_helpers import PROJECT, drain, make_topic_with_subscription

pytestmark = pytest.mark.integration

API_KEY = "integration-key-0123456789"
SEED = 99


def start_api(topic: str, logs_dir: Path, emulator: ServiceProcess) -> ServiceProcess:
    port = free_port()
    return start_api_process(
        port,
        logs_dir / f"api-{port}.log",
        {
            "PUBSUB_EMULATOR_HOST": emulator.address,
            "QUOTESTREAM_PROJECT": PROJECT,
            "QUOTESTREAM_QUOTES_TOPIC": topic,
            "QUOTESTREAM_API_KEY": API_KEY,
            "QUOTESTREAM_MARKET_SEED": str(SEED),
        },
    )


@pytest.fixture
def relay_topic(pubsub_emulator: ServiceProcess) -> tuple[str, str]:
    return make_topic_with_subscription("relay")


@pytest.fixture
def api(
    relay_topic: tuple[str, str], logs_dir: Path, pubsub_emulator: ServiceProcess
) -> Iterator[ServiceProcess]:
    server = start_api(relay_topic[0], logs_dir, pubsub_emulator)
    try:
        yield server
    finally:
        server.stop()


def history(base_url: str, pair: str, minutes: int) -> list[dict[str, str]]:
    """Real quotes from the API's own history endpoint: what a client would push back."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        now = client.get("/v1/quotes/latest", params={"pairs": pair}).json()["quotes"][0][
            "event_ts"
        ]
        response = client.get(
            "/v1/quotes",
            params={
                "pair": pair,
                "end": now,
                "page_size": 1000,
                "start": _minus_minutes(now, minutes),
            },
        )
        response.raise_for_status()
        return response.json()["quotes"]


def _minus_minutes(timestamp: str, minutes: int) -> str:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) - timedelta(minutes=minutes)
    return moment.isoformat().replace("+00:00", "Z")


def test_posted_quotes_reach_pubsub_exactly_once(
    api: ServiceProcess, relay_topic: tuple[str, str]
) -> None:
    base_url = f"http://{api.address}"
    good = history(base_url, "EUR-USD", 5)  # 600 quotes at 500 ms
    bad = [{**good[0], "bid": "-1"}, {"pair": "EUR-USD"}, [1, 2, 3]]
    batch = good[:300] + bad + good[300:]
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/ready").status_code == 200
        response = client.post("/v1/quotes", json=batch, headers={"X-API-Key": API_KEY})
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert receipt["accepted"] == len(good)
    assert [r["index"] for r in receipt["rejections"]] == [300, 301, 302]

    received = drain(relay_topic[1], expected=len(good))
    assert sorted(m.data for m in received) == sorted(
        parse_quote(json.dumps(q).encode()).to_json() for q in good
    )
    for message in received:
        quote = parse_quote(message.data, message.attributes)
        assert message.attributes == quote.pubsub_attributes()


def test_sigterm_flushes_every_accepted_quote_before_exit(
    relay_topic: tuple[str, str], logs_dir: Path, pubsub_emulator: ServiceProcess
) -> None:
    server = start_api(relay_topic[0], logs_dir, pubsub_emulator)
    market = MarketSimulator(SEED, PAIR_CATALOG)
    spec = PAIR_CATALOG["BTC-USD"]
    now = market.latest(spec, now_ms()).event_ts_ms
    quotes = [q.to_dict() for _, q in market.quotes_between(spec, now - 600_000, now)]  # 2400
    accepted = 0
    try:
        with httpx.Client(base_url=f"http://{server.address}", timeout=10) as client:
            for start in range(0, len(quotes), 800):
                response = client.post(
                    "/v1/quotes", json=quotes[start : start + 800], headers={"X-API-Key": API_KEY}
                )
                assert response.status_code == 202, response.text
                accepted += response.json()["accepted"]
        # What Cloud Run does on scale-in: SIGTERM, then wait for the process to exit.
        os.kill(server.pid, signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert accepted == len(quotes)
    received = drain(relay_topic[1], expected=accepted)
    assert len(received) == accepted
    assert {m.attributes["event_id"] for m in received} == {q["event_id"] for q in quotes}
    assert "relay drained" in server.log_path.read_text()
