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

from quotestream.adapters.oanda import Backoff, OandaPricingStream, Price, read_line
from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.quote import now_ms
from quotestream.ports.sources import UnreadableLine
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
        # As the extract reads it: each poll the window since the last one.
        cursor = now_ms()
        unreadable: list[UnreadableLine] = []
        try:

            def streaming_again() -> bool:
                nonlocal cursor
                end = now_ms()
                for pair in ("EUR-USD", "USD-JPY"):
                    quotes.extend(stream.history(pair, cursor, end))
                unreadable.extend(stream.unreadable(cursor, end))
                cursor = end
                return len(feed.requests) >= 5 and len(quotes) >= 3 + 10

            wait_until(streaming_again, 30, "quotes after the reconnections", poll_s=0.1)
            # Every price the stand-in had sent by now, of a configured instrument, comes.
            sent = list(feed.sent)
            expected = {
                p.quote["event_id"]
                for line in sent
                if isinstance(p := read_line(line, PAIRS), Price)
            }
            wait_until(
                lambda: streaming_again() and expected <= {q["event_id"] for q in quotes},
                10,
                "every price sent",
                poll_s=0.1,
            )
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
    connections = list(stream.connections)
    delays = [delay for delay, _ in connections[1:5]]
    for failures, delay in enumerate(delays):
        full = min(BACKOFF.max_s, BACKOFF.initial_s * 2**failures)
        assert full / 2 <= delay < full, (failures, delay)
    gaps = [later.at - earlier.at for earlier, later in pairwise(requests[:5])]
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True))
    assert gaps[3] >= SILENCE_S + delays[3], "the silent stream was not given its timeout"
    outcomes = [outcome for _, outcome in connections[:4]]
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
    connections = list(stream.connections)
    assert all("HTTP 401" in outcome for _, outcome in connections[:2]), connections


def test_the_stand_in_serves_spec_shaped_lines() -> None:
    line = json.loads(price_line("EUR_USD", 1))
    assert line["type"] == "PRICE"
    assert set(line) >= {"instrument", "time", "bids", "asks", "closeoutBid", "closeoutAsk"}
    assert line["time"].endswith("Z")
    assert len(line["time"].split(".")[1]) == 10  # nine digits and the Z


def open_stream(feed: OandaStandIn, **options: Any) -> OandaPricingStream:
    return OandaPricingStream(
        feed.url,
        ACCOUNT,
        TOKEN,
        ["EUR-USD", "USD-JPY"],
        silence_timeout_s=options.pop("silence_timeout_s", SILENCE_S),
        backoff=options.pop("backoff", BACKOFF),
        **options,
    )


def test_a_retried_window_is_handed_over_again_and_only_older_ones_are_forgotten() -> None:
    """A Beam bundle that failed after its fetch is retried with the cursor where it was:
    the same window gets the same quotes and unreadable lines again."""
    scripts = [[("line", b"not json"), ("price", "EUR_USD"), ("line", b"[1]")], []]
    with OandaStandIn(TOKEN, ACCOUNT, scripts, price_every_s=0.05) as feed:
        stream = open_stream(feed)
        try:
            start = now_ms()
            assert list(stream.history("EUR-USD", start, start)) == []  # connects
            wait_until(
                lambda: len(list(stream.history("EUR-USD", start, now_ms()))) >= 5,
                60,
                "quotes",
                poll_s=0.05,
            )
            end = now_ms()
            first = list(stream.history("EUR-USD", start, end))
            lines = stream.unreadable(start, end)
            again = list(stream.history("EUR-USD", start, end))
            assert first == again
            assert len(first) >= 5
            assert [line.payload for line in lines] == [b"not json", b"[1]"]
            assert stream.unreadable(start, end) == lines
            # The next window: none of the last, and the last one's are forgotten.
            wait_until(
                lambda: list(stream.history("EUR-USD", end, now_ms())) != [],
                60,
                "more quotes",
                poll_s=0.05,
            )
            later = list(stream.history("EUR-USD", end, now_ms()))
            assert not {q["event_id"] for q in later} & {q["event_id"] for q in first}
            assert list(stream.history("EUR-USD", start, end)) == []
            assert stream.unreadable(end, now_ms()) == []
        finally:
            stream.close()


def test_a_feed_that_sends_a_line_and_closes_backs_off_as_one_that_fails() -> None:
    """Only a connection that stayed up the silence timeout resets the backoff: one that
    closes after a heartbeat is reopened later and later, not every second for ever."""
    backoff = Backoff(0.05, 0.8)
    with OandaStandIn(TOKEN, ACCOUNT, [[("heartbeat",), ("close",)]]) as feed:
        stream = open_stream(feed, backoff=backoff, silence_timeout_s=5.0)
        try:
            stream.latest(["EUR-USD"])
            wait_until(lambda: len(stream.connections) >= 6, 60, "reconnections", poll_s=0.05)
        finally:
            stream.close()
    delays = [delay for delay, _ in list(stream.connections)[1:6]]
    for failures, delay in enumerate(delays):
        full = min(backoff.max_s, backoff.initial_s * 2**failures)
        assert full / 2 <= delay < full, (failures, delays)
    assert delays[-1] >= 0.4


def test_a_last_line_without_its_newline_is_read_and_a_body_not_chunked_is_refused() -> None:
    last = price_line("USD_JPY", 4)
    scripts = [[("tail", last)], [("plain", price_line("EUR_USD", 5) + b"\n")]]
    with OandaStandIn(TOKEN, ACCOUNT, scripts) as feed:
        stream = open_stream(feed, backoff=Backoff(0.05, 0.1))
        try:
            stream.latest(["USD-JPY"])
            wait_until(lambda: len(stream.connections) >= 3, 60, "reconnections", poll_s=0.05)
            quotes = list(stream.history("USD-JPY", 0, now_ms() + 1000))
            eur_usd = list(stream.history("EUR-USD", 0, now_ms() + 1000))
            lines = stream.unreadable(0, now_ms() + 1000)
        finally:
            stream.close()
    expected = read_line(last, PAIRS)
    assert isinstance(expected, Price)
    assert quotes == [expected.quote], "the whole last line was not taken as a quote"
    assert lines == [], "a whole last line was called cut"
    outcomes = [outcome for _, outcome in list(stream.connections)[1:3]]
    assert all("not a chunked stream" in outcome for outcome in outcomes), outcomes
    assert eur_usd == [], "a body not chunked was read"


def test_unreadable_lines_are_kept_within_a_byte_budget_and_connections_are_bounded() -> None:
    counted: Counter[str] = Counter()
    bad = [b"x" * 1000 + str(n).encode() for n in range(5)]
    with OandaStandIn(TOKEN, ACCOUNT, [[("line", line) for line in bad], []]) as feed:
        stream = open_stream(
            feed, unreadable_budget_bytes=2500, on_outcome=lambda name: counted.update([name])
        )
        try:
            stream.latest(["EUR-USD"])
            wait_until(
                lambda: counted["oanda_unreadable"] >= 5 or bool(stream.latest(["EUR-USD"])),
                60,
                "the unreadable lines",
                poll_s=0.05,
            )
            wait_until(lambda: stream.latest(["EUR-USD"]) != [], 60, "a quote", poll_s=0.05)
            kept = stream.unreadable(0, now_ms() + 1000)
        finally:
            stream.close()
    assert [line.payload for line in kept] == bad[-2:]
    assert counted["oanda_buffer_overflow"] == 3
    assert stream.connections.maxlen == 100
