"""A second quote source of a real feed's shape: OANDA's v20 pricing stream.

What it follows, from OANDA's v20 developer reference (checked 2026-12-07): "Pricing
Endpoints" (https://developer.oanda.com/rest-live-v20/pricing-ep/) and the pricing
definitions there (ClientPrice, PriceBucket, PricingHeartbeat):

- `GET /v3/accounts/{accountID}/pricing/stream?instruments=EUR_USD,USD_JPY` with header
  `Authorization: Bearer <token>`; `Accept-Datetime-Format` chooses RFC 3339 (the default,
  asked explicitly here) or UNIX times. The body is chunked: one JSON object a line.
- a price line (ClientPrice): `type` "PRICE", `instrument` (EUR_USD), `time` (when the price
  was created; RFC 3339 with up to nine fractional digits), `tradeable` ("whether the price is
  tradeable"), `bids` and `asks`: lists of PriceBucket `{"price": "<decimal as a string>",
  "liquidity": ...}`, either of which "is possible to be empty if there is no liquidity"
  on that side; `closeoutBid` / `closeoutAsk`: the prices used to close out a position when
  there is no liquidity, never used to open one.
- a heartbeat line (PricingHeartbeat): `type` "HEARTBEAT" and a `time`; it keeps an idle
  connection alive. OANDA's streaming best practices (written for its v1 streaming API,
  http://developer.oanda.com/rest-live/streaming/, the same chunked-JSON-lines design) advise
  reconnecting when nothing arrived for more than 10 seconds: `oanda_silence_timeout_s`.

How a line becomes a quote in the gate's form (`source` "oanda", event id from pair, time and
source as for every quote): the pair is the instrument with `-` for `_`; bid is the highest
bid bucket's price and ask the lowest ask bucket's (the ladder's order is not relied on);
mid and spread are computed from them; the time is cut to milliseconds. The closeout prices
are not quotes (they never open a position) and are not used. What the gate then refuses
(a price with more decimals than the pair's scale, a crossed market, a time it cannot read)
is dead-lettered by the load with the gate's reason.

What is not a quote, and why:
- a price with `tradeable` false or an empty side is dropped, counted (`oanda_not_tradeable`,
  `oanda_no_liquidity`): it is the feed's documented state, not a fault, and no price to trade.
- an instrument the configuration lacks (not in `pairs`) is dropped, counted
  (`oanda_unconfigured_instrument`) and logged once per instrument: the feed sends only what
  the stream subscribed to, so such a line means the subscription and the configuration
  differ; dead-lettering it would file up to four valid prices a second per instrument as
  failures (the gate could only ever answer `unknown_pair`), which the dead-letter ratio
  alert would then report as a broken pipeline.
- a line that is not a JSON object of a known type, or a price without the fields the mapping
  needs, or the part of a line a dropped connection cut, is unreadable: published as
  received, with attributes `source`, `source_reason` and `source_detail`, so the load's gate
  dead-letters it (e.g. `malformed_json`) and the dead letter keeps both reasons.

A stream has no history: each quote (and unreadable line) is stamped with the moment it was
received, on the clock of the extract's cursor, and `history(pair, start, end)` serves the
pair's quotes received in [start, end). It forgets only what was received before `start`, so
a Beam bundle that failed and is retried with the cursor where it was gets the same quotes
again (the load stores each once, by event id); unreadable lines are handed over alike
(`unreadable(start, end)`). A dropped or silent stream reconnects with exponential backoff,
bounded and jittered, reset only by a connection that stayed up at least the silence timeout;
quotes the feed sent while it was down are not sent again (the snapshot on reconnect is the
price then in effect: the same price again has the same event id, and the load stores it once).

What it holds is bounded: at most `buffer_per_pair` quotes a pair, unreadable lines up to
`UNREADABLE_BUDGET_BYTES` (each payload cut to `MAX_LINE_BYTES`), the last 100 connections'
outcomes; it reads the body in pieces of at most `READ_BYTES` and refuses a body that is not
chunked (OANDA's is), which would otherwise be read to its end before a line is seen.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from quotestream.domain.pairs import PAIR_CATALOG, PairSpec
from quotestream.domain.quote import format_ts, make_event_id, now_ms, to_ms
from quotestream.ports.sources import UnreadableLine

log = logging.getLogger(__name__)

SOURCE = "oanda"
STREAM_PATH = "/v3/accounts/{account}/pricing/stream"
# RFC 3339 as OANDA writes it: UTC, up to nine fractional digits.
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")
_DETAIL_CHARS = 200
# A price line is a few hundred bytes; a "line" past this is kept (its head) as unreadable
# `too_long`, never parsed.
MAX_LINE_BYTES = 65_536
# What the unreadable lines not yet handed over may hold, payloads summed; past it the oldest
# go (counted, `oanda_buffer_overflow`).
UNREADABLE_BUDGET_BYTES = 4 * 1024 * 1024
# The most read from the connection at once (a chunk of the body may be larger).
READ_BYTES = 16_384
# The outcomes of this many connections are kept (`connections`).
KEPT_CONNECTIONS = 100


def pair_of(instrument: str) -> str:
    """EUR_USD -> EUR-USD."""
    return instrument.replace("_", "-")


def instrument_of(pair: str) -> str:
    """EUR-USD -> EUR_USD."""
    return pair.replace("-", "_")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    time: str


@dataclass(frozen=True, slots=True)
class Price:
    """A price line in the gate's form (`quote`) and its time in ms (None when unreadable:
    the gate names it)."""

    quote: dict[str, str]
    event_ms: int | None


@dataclass(frozen=True, slots=True)
class Dropped:
    """A valid line that is not a quote to store: `reason` names the counter."""

    reason: str
    instrument: str


Line = Price | Heartbeat | Dropped | UnreadableLine


def read_line(line: bytes, pairs: Mapping[str, PairSpec]) -> Line:
    """One line of the stream: a quote in the gate's form, a heartbeat, a dropped price, or
    an unreadable line. Never raises."""

    def unreadable(reason: str, detail: str) -> UnreadableLine:
        return UnreadableLine(line[:MAX_LINE_BYTES], SOURCE, reason, detail[:_DETAIL_CHARS])

    if len(line) > MAX_LINE_BYTES:  # no line of the feed is that long: not parsed
        return unreadable("too_long", f"a line of {len(line)} bytes")
    try:
        document = json.loads(line)
    except (ValueError, RecursionError) as error:
        return unreadable("not_json", str(error))
    if not isinstance(document, dict):
        return unreadable("not_an_object", f"a JSON {type(document).__name__}")
    kind = document.get("type")
    if kind == "HEARTBEAT":
        return Heartbeat(str(document.get("time", "")))
    if kind != "PRICE":
        return unreadable("unknown_type", f"type {str(kind)[:40]!r}, not PRICE or HEARTBEAT")
    instrument, time_text = document.get("instrument"), document.get("time")
    bids, asks = document.get("bids"), document.get("asks")
    if not isinstance(instrument, str) or not isinstance(time_text, str):
        return unreadable("missing_field", "a PRICE needs instrument and time as strings")
    if not isinstance(bids, list) or not isinstance(asks, list):
        return unreadable("missing_field", "a PRICE needs bids and asks as lists")
    spec = pairs.get(pair_of(instrument))
    if spec is None:
        return Dropped("unconfigured_instrument", instrument)
    if document.get("tradeable") is False:
        return Dropped("not_tradeable", instrument)
    if not bids or not asks:
        return Dropped("no_liquidity", instrument)
    prices: dict[str, list[Decimal]] = {"bids": [], "asks": []}
    texts: dict[str, list[str]] = {"bids": [], "asks": []}
    for side, buckets in (("bids", bids), ("asks", asks)):
        for bucket in buckets:
            price = bucket.get("price") if isinstance(bucket, dict) else None
            if not isinstance(price, str):
                return unreadable("bad_bucket", f"{side}: a bucket without a price string")
            texts[side].append(price)
            try:
                prices[side].append(Decimal(price))
            except InvalidOperation:
                prices[side].append(Decimal("NaN"))
    return _quote(spec, time_text, prices, texts)


def _quote(
    spec: PairSpec, time_text: str, prices: dict[str, list[Decimal]], texts: dict[str, list[str]]
) -> Price:
    """The gate's form of a price. A value it cannot compute with (a price that is not a
    decimal, a time it cannot read) goes into the quote as received: the gate names it."""
    event_ts, event_ms = time_text, None
    match = _TIME.fullmatch(time_text)
    if match is not None:
        try:
            second = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            event_ms = to_ms(second) + int((match.group(2) or "0").ljust(9, "0")[:3])
            event_ts = format_ts(event_ms)
    if any(price.is_nan() for side in prices.values() for price in side):
        # The first unreadable price as the bid (or ask): the gate reads bid, then ask.
        bid_text = next(
            (t for t, p in zip(texts["bids"], prices["bids"], strict=True) if p.is_nan()), None
        )
        ask_text = next(
            (t for t, p in zip(texts["asks"], prices["asks"], strict=True) if p.is_nan()), None
        )
        bid_text = bid_text or _text(max(prices["bids"]), texts["bids"], prices["bids"])
        ask_text = ask_text or _text(min(prices["asks"]), texts["asks"], prices["asks"])
        mid = spread = ""
    else:
        bid, ask = max(prices["bids"]), min(prices["asks"])
        bid_text = _text(bid, texts["bids"], prices["bids"])
        ask_text = _text(ask, texts["asks"], prices["asks"])
        mid = format((bid + ask) / 2, "f")
        spread = format(ask - bid, "f")
    quote = {
        "event_id": make_event_id(spec.pair, event_ms, SOURCE) if event_ms is not None else "",
        "pair": spec.pair,
        "base": spec.base,
        "quote_currency": spec.quote_currency,
        "bid": bid_text,
        "ask": ask_text,
        "mid": mid,
        "spread": spread,
        "event_ts": event_ts,
        "source": SOURCE,
    }
    return Price(quote, event_ms)


def _text(value: Decimal, texts: list[str], values: list[Decimal]) -> str:
    """The price as the feed wrote it (its digits are what the gate judges)."""
    for text, parsed in zip(texts, values, strict=True):
        if not parsed.is_nan() and parsed == value:
            return text
    return format(value, "f")


class StreamFailed(ConnectionError):
    pass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential, bounded, jittered: the n-th consecutive failed connection (from 0) waits
    min(max_s, initial_s * 2**n) times a factor drawn from [0.5, 1)."""

    initial_s: float
    max_s: float

    def delay(self, failures: int, draw: float) -> float:
        growth: float = 2.0 ** min(failures, 30)
        return min(self.max_s, self.initial_s * growth) * (0.5 + draw / 2)


class OandaPricingStream:
    """The QuoteSource (and QuoteStream) over OANDA's v20 pricing stream. The connection is
    made on first use, by a background thread that keeps it open; nothing connects before.
    What it receives is stamped with `clock()` (the extract's cursor's clock) and handed over
    by the window of receipt (`history`, `unreadable`), as often as asked.
    `on_outcome` (if any; else `tell`) is told of its events by counter name: `oanda_connected`,
    `oanda_reconnects`, `oanda_unreadable`, `oanda_<reason of a dropped price>`,
    `oanda_buffer_overflow`; on the thread that calls `history`, `latest` or `unreadable`
    (Beam counts only on the threads it runs a step on), for what happened since the last
    call."""

    def __init__(
        self,
        stream_url: str,
        account_id: str,
        token: str,
        pairs: Sequence[str],
        *,
        silence_timeout_s: float = 10.0,
        backoff: Backoff = Backoff(1.0, 60.0),
        connect_timeout_s: float = 5.0,
        buffer_per_pair: int = 10_000,
        unreadable_budget_bytes: int = UNREADABLE_BUDGET_BYTES,
        on_outcome: Callable[[str], None] | None = None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._url = stream_url.rstrip("/") + STREAM_PATH.format(account=account_id)
        self._token = token
        self._pairs = {pair: PAIR_CATALOG[pair] for pair in pairs}
        self._silence_timeout_s = silence_timeout_s
        self._backoff = backoff
        self._connect_timeout_s = connect_timeout_s
        self._on_outcome = on_outcome
        self._draw = draw
        self._clock = clock
        self._lock = threading.Lock()
        # Per pair, (received at, quote) in the order received.
        self._buffers: dict[str, deque[tuple[int, dict[str, str]]]] = {
            pair: deque(maxlen=buffer_per_pair) for pair in self._pairs
        }
        self._unreadable: deque[tuple[int, UnreadableLine]] = deque()
        self._unreadable_bytes = 0
        self._unreadable_budget = unreadable_budget_bytes
        self._told: set[tuple[str, str]] = set()
        self._counts: Counter[str] = Counter()
        self._delivered = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        # What happened to the last connections, for logs and tests: (delay before it, outcome).
        self.connections: deque[tuple[float, str]] = deque(maxlen=KEPT_CONNECTIONS)

    # -- QuoteSource ------------------------------------------------------------------------

    def latest(self, pairs: Sequence[str]) -> list[dict[str, str]]:
        self._start()
        with self._lock:
            latest = [self._buffers[p][-1][1] for p in pairs if self._buffers.get(p)]
        self._tell()
        return latest

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        """The quotes of `pair` received in [start_ms, end_ms) (a stream has no past: the
        window is when they arrived, not their time). What was received before `start_ms`
        is forgotten; the rest is served again to a repeated call (a retried bundle)."""
        self._start()
        with self._lock:
            buffer = self._buffers.get(pair)
            if buffer is None:
                taken = []
            else:
                while buffer and buffer[0][0] < start_ms:
                    buffer.popleft()
                taken = [quote for received, quote in buffer if received < end_ms]
        self._tell()
        return iter(taken)

    def unreadable(self, start_ms: int, end_ms: int) -> list[UnreadableLine]:
        """The unreadable lines received in [start_ms, end_ms), as `history` hands quotes
        over: forgetting only those received before `start_ms`."""
        self._start()
        with self._lock:
            while self._unreadable and self._unreadable[0][0] < start_ms:
                self._forget_unreadable()
            taken = [line for received, line in self._unreadable if received < end_ms]
        self._tell()
        return taken

    def close(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()
        if self._thread is not None:
            self._thread.join(timeout=self._silence_timeout_s + self._connect_timeout_s + 1)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _tell(self) -> None:
        if self._on_outcome is not None:
            self.tell(self._on_outcome)

    def tell(self, on_outcome: Callable[[str], None]) -> None:
        """Tell `on_outcome` what happened since it was last told, on this thread."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        for name, times in counts.items():
            for _ in range(times):
                on_outcome(name)

    # -- the connection ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="oanda-pricing-stream", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        import requests

        session = requests.Session()
        # Connections in a row that failed or did not stay up the silence timeout: a feed that
        # sends a line and closes backs off as one that refuses.
        failures, delay = 0, 0.0
        try:
            while not self._stop.is_set():
                self._delivered = False
                opened = time.monotonic()
                try:
                    self._read(session)
                    outcome = "ended"
                except Exception as error:  # whatever ends it, the stream reopens
                    # (requests' errors, the feed's refusals, and a read racing close()).
                    outcome = f"{type(error).__name__}: {error}"[:300]
                lasted_s = time.monotonic() - opened
                healthy = self._delivered and lasted_s >= self._silence_timeout_s
                self.connections.append((delay, outcome))
                if self._stop.is_set():
                    break
                if healthy:
                    failures = 0
                delay = self._backoff.delay(failures, self._draw())
                failures += 1
                self._count("oanda_reconnects")
                log.warning(
                    "OANDA stream %s after %.1f s (%s); reconnecting in %.2f s (%d failed in a "
                    "row)",
                    "dropped" if self._delivered else "unavailable",
                    lasted_s,
                    outcome,
                    delay,
                    0 if healthy else failures,
                )
                self._stop.wait(delay)
        finally:
            session.close()

    def _read(self, session: Any) -> None:
        """One connection, read until it ends (`_delivered` tells whether it gave a line)."""
        pending = b""
        ended = False
        try:
            response = session.get(
                self._url,
                params={"instruments": ",".join(instrument_of(p) for p in self._pairs)},
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Accept-Datetime-Format": "RFC3339",
                },
                stream=True,
                timeout=(self._connect_timeout_s, self._silence_timeout_s),
            )
            self._response = response
            with response:
                if response.status_code != 200:
                    raise StreamFailed(f"HTTP {response.status_code}: {response.text[:200]}")
                if not getattr(response.raw, "chunked", False):
                    # Read in pieces, a body of known length would only give its lines
                    # once a piece is full, and one read to its end, not at all.
                    raise StreamFailed("the answer is not a chunked stream: not the feed")
                self._count("oanda_connected")
                for chunk in response.iter_content(chunk_size=READ_BYTES):
                    if self._stop.is_set():
                        break
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._delivered = True
                            self._receive(read_line(line, self._pairs))
                    if len(pending) > MAX_LINE_BYTES:  # no line is that long: not the feed
                        self._keep_unreadable(
                            UnreadableLine(
                                pending[:MAX_LINE_BYTES],
                                SOURCE,
                                "too_long",
                                f"no end of line in {len(pending)} bytes",
                            )
                        )
                        pending = b""
                ended = True
        finally:
            self._response = None
            if pending.strip() and not self._stop.is_set():
                self._last_line(pending, ended)

    def _last_line(self, line: bytes, ended: bool) -> None:
        """What was left without an end of line when the connection ended: a whole line (a
        feed may end its last one without a newline) is taken as any other; else it is the
        head of a line the connection cut."""
        read = read_line(line, self._pairs)
        if not isinstance(read, UnreadableLine):
            self._delivered = True
            self._receive(read)
            return
        how = "ended" if ended else "broke off"
        self._keep_unreadable(
            UnreadableLine(
                line[:MAX_LINE_BYTES],
                SOURCE,
                "cut_line",
                f"the connection {how} in the middle of this line",
            )
        )

    def _receive(self, read: Line) -> None:
        if isinstance(read, Heartbeat):
            return
        if isinstance(read, UnreadableLine):
            self._keep_unreadable(read)
            return
        if isinstance(read, Dropped):
            self._count(f"oanda_{read.reason}")
            if (read.reason, read.instrument) not in self._told:
                self._told.add((read.reason, read.instrument))
                log.warning(
                    "OANDA %s: %s, dropped (counted from now on)", read.instrument, read.reason
                )
            return
        received = self._clock()
        with self._lock:
            buffer = self._buffers[read.quote["pair"]]
            if buffer.maxlen is not None and len(buffer) == buffer.maxlen:
                self._counts["oanda_buffer_overflow"] += 1
            buffer.append((received, read.quote))

    def _keep_unreadable(self, line: UnreadableLine) -> None:
        self._count("oanda_unreadable")
        log.warning(
            "OANDA line unreadable (%s: %s): %r", line.reason, line.detail, line.payload[:200]
        )
        received = self._clock()
        with self._lock:
            self._unreadable.append((received, line))
            self._unreadable_bytes += len(line.payload)
            while self._unreadable_bytes > self._unreadable_budget and self._unreadable:
                self._forget_unreadable()
                self._counts["oanda_buffer_overflow"] += 1

    def _forget_unreadable(self) -> None:
        """The oldest unreadable line goes (the lock held)."""
        _, line = self._unreadable.popleft()
        self._unreadable_bytes -= len(line.payload)


# One stream per process and feed: Beam runs several copies of the extract's fetch step in a
# worker, and a pair's quotes must be in the buffer of whichever copy asks for the pair.
_SHARED: dict[tuple[str, str, tuple[str, ...]], list[Any]] = {}
_SHARED_LOCK = threading.Lock()


class SharedOandaStream:
    """A lease on this process's one OandaPricingStream for a feed, account and pairs (the
    QuoteStream the extract gets): every lease reads the same connection and buffer, each
    tells its own `on_outcome`, and the last one closed closes the stream."""

    def __init__(
        self,
        key: tuple[str, str, tuple[str, ...]],
        make: Callable[[], OandaPricingStream],
        on_outcome: Callable[[str], None] = lambda _: None,
    ) -> None:
        with _SHARED_LOCK:
            entry = _SHARED.get(key)
            if entry is None:
                entry = _SHARED[key] = [make(), 0]
            entry[1] += 1
        self._key = key
        self._stream: OandaPricingStream = entry[0]
        self._on_outcome = on_outcome
        self._closed = False

    def latest(self, pairs: Sequence[str]) -> list[dict[str, str]]:
        latest = self._stream.latest(pairs)
        self._stream.tell(self._on_outcome)
        return latest

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        quotes = self._stream.history(pair, start_ms, end_ms)
        self._stream.tell(self._on_outcome)
        return quotes

    def unreadable(self, start_ms: int, end_ms: int) -> list[UnreadableLine]:
        lines = self._stream.unreadable(start_ms, end_ms)
        self._stream.tell(self._on_outcome)
        return lines

    def close(self) -> None:
        with _SHARED_LOCK:
            if self._closed:
                return
            self._closed = True
            entry = _SHARED[self._key]
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _SHARED[self._key]
        if last:
            self._stream.close()
