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

A stream has no history: `history(pair, start, end)` serves the quotes received since the
stream connected whose time is before `end`, each once (a late one too, whatever `start`). A
dropped or silent stream reconnects with exponential backoff, bounded and jittered; quotes
the feed sent while it was down are not sent again (the snapshot on reconnect is the price
then in effect: the same price again has the same event id, and the load stores it once).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from quotestream.domain.pairs import PAIR_CATALOG, PairSpec
from quotestream.domain.quote import format_ts, make_event_id, to_ms
from quotestream.ports.sources import UnreadableLine

log = logging.getLogger(__name__)

SOURCE = "oanda"
STREAM_PATH = "/v3/accounts/{account}/pricing/stream"
# RFC 3339 as OANDA writes it: UTC, up to nine fractional digits.
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")
_DETAIL_CHARS = 200
# A price line is a few hundred bytes; a "line" past this is kept (its head) as unreadable.
MAX_LINE_BYTES = 65_536


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
class Dropped:
    """A valid line that is not a quote to store: `reason` names the counter."""

    reason: str
    instrument: str


Line = dict[str, str] | Heartbeat | Dropped | UnreadableLine


def read_line(line: bytes, pairs: Mapping[str, PairSpec]) -> Line:
    """One line of the stream: a quote in the gate's form, a heartbeat, a dropped price, or
    an unreadable line. Never raises."""

    def unreadable(reason: str, detail: str) -> UnreadableLine:
        return UnreadableLine(line, SOURCE, reason, detail[:_DETAIL_CHARS])

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
) -> dict[str, str]:
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
    return {
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
    `on_outcome` (if any; else `tell`) is told of its events by counter name: `oanda_connected`,
    `oanda_reconnects`, `oanda_unreadable`, `oanda_<reason of a dropped price>`,
    `oanda_buffer_overflow`; on the thread that calls `history`, `latest` or
    `take_unreadable` (Beam counts only on the threads it runs a step on), for what happened
    since the last call."""

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
        on_outcome: Callable[[str], None] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._url = stream_url.rstrip("/") + STREAM_PATH.format(account=account_id)
        self._token = token
        self._pairs = {pair: PAIR_CATALOG[pair] for pair in pairs}
        self._silence_timeout_s = silence_timeout_s
        self._backoff = backoff
        self._connect_timeout_s = connect_timeout_s
        self._on_outcome = on_outcome
        self._draw = draw
        self._lock = threading.Lock()
        self._buffers: dict[str, deque[tuple[int, dict[str, str]]]] = {
            pair: deque(maxlen=buffer_per_pair) for pair in self._pairs
        }
        self._unreadable: deque[UnreadableLine] = deque(maxlen=buffer_per_pair)
        self._told: set[tuple[str, str]] = set()
        self._counts: Counter[str] = Counter()
        self._delivered = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        # What happened to the connection, for logs and tests: (delay before it, outcome).
        self.connections: list[tuple[float, str]] = []

    # -- QuoteSource ------------------------------------------------------------------------

    def latest(self, pairs: Sequence[str]) -> list[dict[str, str]]:
        self._start()
        with self._lock:
            latest = [self._buffers[p][-1][1] for p in pairs if self._buffers.get(p)]
        self._tell()
        return latest

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        """The quotes of `pair` received and not yet handed over whose time is before
        `end_ms` (a stream has no past: `start_ms` does not hold a late one back)."""
        self._start()
        with self._lock:
            buffer = self._buffers.get(pair)
            taken = [quote for moment, quote in buffer or () if moment < end_ms]
            if buffer and taken:
                kept = [(moment, quote) for moment, quote in buffer if moment >= end_ms]
                buffer.clear()
                buffer.extend(kept)
        self._tell()
        return iter(taken)

    def take_unreadable(self) -> list[UnreadableLine]:
        self._start()
        with self._lock:
            taken = list(self._unreadable)
            self._unreadable.clear()
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
        failures, delay = 0, 0.0
        try:
            while not self._stop.is_set():
                self._delivered = False
                try:
                    self._read(session)
                    outcome = "ended"
                except Exception as error:  # whatever ends it, the stream reopens
                    # (requests' errors, the feed's refusals, and a read racing close()).
                    outcome = f"{type(error).__name__}: {error}"[:300]
                delivered = self._delivered
                self.connections.append((delay, outcome))
                if self._stop.is_set():
                    break
                failures = 0 if delivered else failures + 1
                delay = self._backoff.delay(failures, self._draw())
                self._count("oanda_reconnects")
                log.warning(
                    "OANDA stream %s (%s); reconnecting in %.2f s (%d failed in a row)",
                    "dropped" if delivered else "unavailable",
                    outcome,
                    delay,
                    failures,
                )
                self._stop.wait(delay)
        finally:
            session.close()

    def _read(self, session: Any) -> None:
        """One connection, read until it ends (`_delivered` tells whether it gave a line)."""
        pending = b""
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
                self._count("oanda_connected")
                for chunk in response.iter_content(chunk_size=None):
                    if self._stop.is_set():
                        break
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._delivered = True
                            self._receive(line)
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
        finally:
            self._response = None
            if pending.strip() and not self._stop.is_set():
                cut = UnreadableLine(
                    pending, SOURCE, "cut_line", "the connection ended in the middle of this line"
                )
                self._keep_unreadable(cut)

    def _receive(self, line: bytes) -> None:
        read = read_line(line, self._pairs)
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
        event_ms = _event_ms(read)
        with self._lock:
            buffer = self._buffers[read["pair"]]
            if buffer.maxlen is not None and len(buffer) == buffer.maxlen:
                self._counts["oanda_buffer_overflow"] += 1
            buffer.append((event_ms, read))

    def _keep_unreadable(self, line: UnreadableLine) -> None:
        self._count("oanda_unreadable")
        log.warning(
            "OANDA line unreadable (%s: %s): %r", line.reason, line.detail, line.payload[:200]
        )
        with self._lock:
            if len(self._unreadable) == self._unreadable.maxlen:
                self._counts["oanda_buffer_overflow"] += 1
            self._unreadable.append(line)


def _event_ms(quote: dict[str, str]) -> int:
    """Where a quote sorts in its pair's buffer: its time, or 0 for one the gate will refuse
    for its time (handed over at the next poll)."""
    match = _TIME.fullmatch(quote["event_ts"])
    if match is None:
        return 0
    try:
        second = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    except ValueError:
        return 0
    return to_ms(second) + int((match.group(2) or "0").ljust(3, "0")[:3])


# One stream per process and feed: Beam runs several copies of the extract's fetch step in a
# worker, and each pair's quotes must be handed over once, whichever copy asks for the pair.
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

    def take_unreadable(self) -> list[UnreadableLine]:
        lines = self._stream.take_unreadable()
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
