"""The benches post to the relay as a client should: a 503 (relay full) or a 429 is waited
out as its Retry-After says and the same batch sent again; other errors are raised."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from quotestream_dev.bench.relay_client import post_until_accepted
from tests.support.webhook import serving

pytestmark = pytest.mark.unit


class Relay(ThreadingHTTPServer):
    """Answers each POST with the next status of `answers`, then 200 with a receipt."""

    def __init__(self, answers: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), RelayHandler)
        self.answers = answers
        self.bodies: list[Any] = []


class RelayHandler(BaseHTTPRequestHandler):
    server: Relay

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        if status != 200:
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        receipt = json.dumps({"accepted": len(body), "rejected": 0}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(receipt)))
        self.end_headers()
        self.wfile.write(receipt)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    with serving(Relay(list(request.param))) as server:
        yield server


@pytest.mark.parametrize("relay", [[503, 429, 503]], indirect=True)
def test_backpressure_is_waited_out_and_the_same_batch_sent_again(relay: Relay) -> None:
    batch = [{"pair": "USD-BRL"}, {"pair": "EUR-BRL"}]
    url = f"http://127.0.0.1:{relay.server_address[1]}/v1/quotes"
    receipt, waited = post_until_accepted(url, batch, "key")
    assert receipt == {"accepted": 2, "rejected": 0}
    assert waited == 3
    assert relay.bodies == [batch] * 4


@pytest.mark.parametrize("relay", [[400]], indirect=True)
def test_an_error_that_is_not_backpressure_is_raised(relay: Relay) -> None:
    url = f"http://127.0.0.1:{relay.server_address[1]}/v1/quotes"
    with pytest.raises(urllib.error.HTTPError, match="400"):
        post_until_accepted(url, [], "key")
