"""A stand-in for OANDA's v20 pricing stream, serving spec-shaped lines on 127.0.0.1.

`GET /v3/accounts/{account}/pricing/stream?instruments=...` with `Authorization: Bearer
<token>` answers 200 with a chunked body of JSON lines, as OANDA's reference describes it
(see quotestream.adapters.oanda): PRICE lines with bid and ask ladders, closeout prices, a
`tradeable` flag and an RFC 3339 time with nanoseconds, and HEARTBEAT lines. A wrong token
gets 401, another path 404.

Each connection plays the next script (the last one again once they run out); a script is a
list of steps, and a connection whose script ends without ending it streams prices of the
requested instruments (every `price_every_s`) and heartbeats (every `heartbeat_every_s`) until
the stand-in stops.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Decimals OANDA quotes these instruments with, and a level to walk from.
LEVELS = {
    "EUR_USD": (5, Decimal("1.08500")),
    "USD_JPY": (3, Decimal("151.250")),
    "GBP_USD": (5, Decimal("1.27000")),
    "AUD_USD": (5, Decimal("0.66000")),
}


def rfc3339_ns(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def price_line(
    instrument: str, step: int, time_ns: int | None = None, *, tradeable: bool = True
) -> bytes:
    """A PRICE line as the stream writes it: a two-bucket ladder a side (the best first),
    the closeout prices a little outside it."""
    scale, level = LEVELS[instrument]
    tick = Decimal(1).scaleb(-scale)
    bid = level + tick * ((step * 7) % 23 - 11)
    ask = bid + tick * 3
    document = {
        "type": "PRICE",
        "instrument": instrument,
        "time": rfc3339_ns(time.time_ns() if time_ns is None else time_ns),
        "status": "tradeable" if tradeable else "non-tradeable",
        "tradeable": tradeable,
        "bids": [
            {"price": str(bid), "liquidity": 1000000},
            {"price": str(bid - tick), "liquidity": 2000000},
        ],
        "asks": [
            {"price": str(ask), "liquidity": 1000000},
            {"price": str(ask + tick), "liquidity": 2000000},
        ],
        "closeoutBid": str(bid - tick * 2),
        "closeoutAsk": str(ask + tick * 2),
    }
    return json.dumps(document).encode()


def heartbeat_line() -> bytes:
    return json.dumps({"type": "HEARTBEAT", "time": rfc3339_ns(time.time_ns())}).encode()


# Steps of a script:
#   ("price", instrument)   a PRICE line of that instrument, timed now
#   ("line", bytes)         that line as is (a malformed one)
#   ("heartbeat",)          a HEARTBEAT line
#   ("cut", bytes)          the head of a line as a chunk of its own, then the connection
#                           closes: a stream dropped mid-line
#   ("tail", bytes)         that line without its newline, then the body's end: a whole
#                           last line a feed did not end
#   ("close",)              the body's end (its last chunk): the feed closes the stream
#   ("status", code)        answer with that HTTP status instead of a stream
#   ("plain", bytes)        answer 200 with that body, not chunked (Content-Length)
#   ("stall", seconds)      send nothing for that long (a silent stream), then close
Step = tuple[Any, ...]


@dataclass
class Request:
    at: float  # time.monotonic()
    path: str
    instruments: list[str]
    authorization: str
    status: int


@dataclass
class OandaStandIn:
    token: str
    account: str
    scripts: Sequence[Sequence[Step]]
    price_every_s: float = 0.25
    heartbeat_every_s: float = 1.0
    requests: list[Request] = field(default_factory=list)
    # Every whole line written, in order (the cut one not).
    sent: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._steps = 0
        self._last_ns: dict[str, int] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stand_in._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The settings, as environment variables, of an extract reading this stand-in."""
        return {
            "QUOTESTREAM_OANDA_STREAM_URL": self.url,
            "QUOTESTREAM_OANDA_ACCOUNT_ID": self.account,
            "QUOTESTREAM_OANDA_TOKEN": self.token,
        }

    def start(self) -> OandaStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> OandaStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        location = urlsplit(handler.path)
        instruments = parse_qs(location.query).get("instruments", [""])[0].split(",")
        authorization = handler.headers.get("Authorization", "")
        with self._lock:
            script = list(self.scripts[min(len(self.requests), len(self.scripts) - 1)])
            status = 200
            if location.path != f"/v3/accounts/{self.account}/pricing/stream":
                status = 404
            elif authorization != f"Bearer {self.token}":
                status = 401
            elif script and script[0][0] == "status":
                status = int(script[0][1])
            self.requests.append(
                Request(time.monotonic(), location.path, instruments, authorization, status)
            )
        if status == 200 and script and script[0][0] == "plain":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(len(script[0][1])))
            handler.end_headers()
            handler.wfile.write(script[0][1])
            handler.close_connection = True
            return
        if status != 200:
            body = json.dumps({"errorMessage": f"stand-in answers {status}"}).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            self._stream(handler, script, instruments)
        except OSError:
            pass  # the client went away
        finally:
            handler.close_connection = True

    def _stream(
        self, handler: BaseHTTPRequestHandler, script: list[Step], instruments: list[str]
    ) -> None:
        def chunk(data: bytes) -> None:
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
            with self._lock:
                self.sent.extend(line for line in data.split(b"\n")[:-1] if line)

        for step in script:
            if self._stopping.is_set():
                return
            kind = step[0]
            if kind == "price":
                chunk(self._price(step[1]) + b"\n")
            elif kind == "line":
                chunk(step[1] + b"\n")
            elif kind == "heartbeat":
                chunk(heartbeat_line() + b"\n")
            elif kind == "cut":
                chunk(step[1])
                return  # closed without the rest of the line or the last chunk
            elif kind == "tail":
                chunk(step[1])
                chunk(b"")  # the last chunk
                return
            elif kind == "close":
                chunk(b"")
                return
            elif kind == "stall":
                self._stopping.wait(step[1])
                return
        last_heartbeat = time.monotonic()
        while not self._stopping.wait(self.price_every_s):
            lines = [self._price(i) for i in instruments if i in LEVELS]
            if time.monotonic() - last_heartbeat >= self.heartbeat_every_s:
                lines.append(heartbeat_line())
                last_heartbeat = time.monotonic()
            chunk(b"".join(line + b"\n" for line in lines))

    def _price(self, instrument: str) -> bytes:
        """A price of `instrument` timed now, at least a millisecond after its last one (the
        feed sends at most one an instrument per 250 ms window)."""
        with self._lock:
            self._steps += 1
            at_ns = max(time.time_ns(), self._last_ns.get(instrument, 0) + 1_000_000)
            self._last_ns[instrument] = at_ns
            return price_line(instrument, self._steps, at_ns)
