"""The OANDA pricing-stream adapter against a local stand-in of the stream: spec-shaped lines
with heartbeats, a malformed line, an instrument the configuration lacks, a connection dropped
mid-line, refusals and a silent stream; the adapter reconnects with bounded, jittered
exponential backoff and keeps every quote once."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest

from quotestream.adapters.oanda import Backoff, OandaPricingStream, read_line
from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.quote import now_ms
from tests.support.local_runs import wait_until
from tests.support.standins.oanda import OandaStandIn, price_line

pytestmark = pytest.mark.integration

TOKEN = "stand-in-token-0123456789"
ACCOUNT = "101-004-0000000-001"
CUT = b'{"type":"PRICE","instrument":"EUR_USD","time":"2026-12-07T10:00:0'
BACKOFF = Backoff(0.2, 2.0)
SILENCE_S = 1.0
PAIRS = {pair: PAIR_CATALOG[pair] for pair in ("EUR-USD", "USD-JPY")}


def test_the_stream_reconnects_with_backoff_and_hands_over_every_line_once() -> None:
    scripts: list[list[tuple[Any, ...]]] = [
        [
            ("heartbeat",),
            ("price", "EUR_USD"),
            ("price", "USD_JPY"),
            ("line", b"not json at all"),
            ("price", "AUD_USD"),
            ("heartbeat",),
            ("price", "EUR_USD"),
            ("cut", CUT),
        ],
        [("status", 503)],
        [("status", 503)],
        [("stall", 30)],
        [],  # then prices and heartbeats until the end
    ]
    counted: Counter[str] = Counter()
    quotes: list[dict[str, str]] = []
    with OandaStandIn(TOKEN, ACCOUNT, scripts, price_every_s=0.1, heartbeat_every_s=0.5) as feed:
        stream = OandaPricingStream(
            feed.url,
            ACCOUNT,
            TOKEN,
            ["EUR-USD", "USD-JPY"],
            silence_timeout_s=SILENCE_S,
            backoff=BACKOFF,
            on_outcome=lambda name: counted.update([name]),
        )
        try:

            def streaming_again() -> bool:
                for pair in ("EUR-USD", "USD-JPY"):
                    quotes.extend(stream.history(pair, 0, now_ms() + 60_000))
                return len(feed.requests) >= 5 and len(quotes) >= 3 + 10

            wait_until(streaming_again, 30, "quotes after the reconnections", poll_s=0.1)
            # Every price the stand-in had sent by now, of a configured instrument, comes.
            sent = list(feed.sent)
            expected = {
                q["event_id"] for line in sent if isinstance(q := read_line(line, PAIRS), dict)
            }
            wait_until(
                lambda: streaming_again() and expected <= {q["event_id"] for q in quotes},
                10,
                "every price sent",
                poll_s=0.1,
            )
            unreadable = stream.take_unreadable()
        finally:
            stream.close()
    requests = feed.requests

    # Every request as OANDA's reference has it.
    assert {r.path for r in requests} == {f"/v3/accounts/{ACCOUNT}/pricing/stream"}
    assert {r.authorization for r in requests} == {f"Bearer {TOKEN}"}
    assert all(r.instruments == ["EUR_USD", "USD_JPY"] for r in requests)
    assert [r.status for r in requests[:5]] == [200, 503, 503, 200, 200]

    # Backoff: the n-th failure in a row waits initial * 2**n, jittered into [50 %, 100 %);
    # the drop of a connection that delivered lines starts again from the initial delay.
    delays = [delay for delay, _ in stream.connections[1:5]]
    for failures, delay in enumerate(delays):
        full = min(BACKOFF.max_s, BACKOFF.initial_s * 2**failures)
        assert full / 2 <= delay < full, (failures, delay)
    gaps = [later.at - earlier.at for earlier, later in pairwise(requests[:5])]
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True))
    assert gaps[3] >= SILENCE_S + delays[3], "the silent stream was not given its timeout"
    outcomes = [outcome for _, outcome in stream.connections[:4]]
    assert "ChunkedEncodingError" in outcomes[0], outcomes
    assert all("HTTP 503" in outcome for outcome in outcomes[1:3]), outcomes
    assert "ConnectionError" in outcomes[3], outcomes
    assert "timed out" in outcomes[3], outcomes
    assert counted["oanda_reconnects"] >= 4

    # The malformed line and the cut one, as received, each with its reason.
    assert [(u.reason, u.payload) for u in unreadable] == [
        ("not_json", b"not json at all"),
        ("cut_line", CUT),
    ]
    assert counted["oanda_unreadable"] == 2
    # The instrument the configuration lacks: dropped, counted.
    assert counted["oanda_unconfigured_instrument"] == 1
    assert not any(q["pair"] == "AUD-USD" for q in quotes)

    # Every price once, each one the gate accepts, from before the drop and after it.
    ids = [q["event_id"] for q in quotes]
    assert len(ids) == len(set(ids)), "a quote handed over twice"
    accepted = [parse_quote(json.dumps(q).encode()) for q in quotes]
    assert {q.source for q in accepted} == {"oanda"}
    assert {q.pair for q in accepted} == {"EUR-USD", "USD-JPY"}
    assert sum(b'"AUD_USD"' in line for line in sent) == 1
    print(
        f"\nbackoff delays {[round(d, 3) for d in delays]} s; gaps between connections "
        f"{[round(g, 3) for g in gaps]} s; {len(quotes)} quotes; counters {dict(counted)}"
    )


def test_a_refused_token_is_retried_with_backoff_and_never_streams() -> None:
    with OandaStandIn(TOKEN, ACCOUNT, [[]]) as feed:
        stream = OandaPricingStream(
            feed.url, ACCOUNT, "wrong-token-0123456789", ["EUR-USD"], backoff=Backoff(0.05, 0.2)
        )
        try:
            assert list(stream.history("EUR-USD", 0, now_ms())) == []
            wait_until(lambda: len(feed.requests) >= 3, 10, "retries", poll_s=0.05)
        finally:
            stream.close()
    assert {r.status for r in feed.requests} == {401}
    # The first two ended before the third began (the last may end by the close).
    assert all("HTTP 401" in outcome for _, outcome in stream.connections[:2]), stream.connections


def test_the_stand_in_serves_spec_shaped_lines() -> None:
    line = json.loads(price_line("EUR_USD", 1))
    assert line["type"] == "PRICE"
    assert set(line) >= {"instrument", "time", "bids", "asks", "closeoutBid", "closeoutAsk"}
    assert line["time"].endswith("Z")
    assert len(line["time"].split(".")[1]) == 10  # nine digits and the Z
