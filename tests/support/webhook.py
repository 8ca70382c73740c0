"""HTTP servers the tests start on loopback: a Slack-compatible webhook that keeps what it is
sent, and serving any such server (or any socketserver) from a thread for the length of a test."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Server = TypeVar("Server", bound=socketserver.BaseServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Webhook(ThreadingHTTPServer):
    """Keeps the JSON body of every POST it is sent, in `bodies`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _WebhookHandler)
        self.bodies: list[dict[str, Any]] = []

    @property
    def alerts_connection(self) -> str:
        """The alerts connection (AIRFLOW_CONN_QUOTESTREAM_ALERTS) that posts here."""
        url = f"http://127.0.0.1:{self.server_address[1]}/hook"
        return json.dumps({"conn_type": "http", "extra": {"webhook_url": url}})


class _WebhookHandler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass
