from __future__ import annotations

import uuid
from collections import Counter
from functools import partial

import apache_beam as beam
import pytest

from quotestream.beam.extract import ExtractQuotes, Fallback, PublishQuotesFn
from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.market import MarketSimulator
from tests.support.fakes import shared_publisher
from tests.support.pipelines import StepClock, direct_pipeline
from tests.support.simulated_source import SimulatedSource, calls_made

pytestmark = pytest.mark.unit

START_MS = 1_795_000_000_000


def test_each_quote_is_published_once_with_its_attributes_despite_failed_fetches() -> None:
    name = f"extract-{uuid.uuid4()}"
    publisher = shared_publisher(name)
    pairs = ["USD-BRL", "BTC-USD", "EUR-USD"]
    with direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(range(12))
            | ExtractQuotes(
                pairs,
                # The fifth and sixth calls fail like an outage.
                partial(SimulatedSource, seed=9, name=name, failing=(4, 5)),
                partial(shared_publisher, name),
                "quotes",
                lag_ms=0,
                first_lookback_ms=2000,
                clock=StepClock(name, START_MS),
                ordered=True,
            )
        )
    assert calls_made(name) > 6, "the outage never happened"
    quotes = [
        parse_quote(m.data, m.attributes, now_ms=START_MS + 10**9) for m in publisher.messages
    ]
    assert {m.topic for m in publisher.messages} == {"quotes"}
    assert {m.ordering_key for m in publisher.messages} == set(pairs)
    ids = Counter(q.event_id for q in quotes)
    assert ids
    assert max(ids.values()) == 1, "a quote was published twice"
    market = MarketSimulator(9, PAIR_CATALOG)
    for pair in pairs:
        times = sorted(q.event_ts_ms for q in quotes if q.pair == pair)
        assert times, pair
        expected = [
            q.event_ts_ms
            for _, q in market.quotes_between(PAIR_CATALOG[pair], times[0], times[-1] + 1)
        ]
        assert times == expected, f"{pair}: a gap (a failed fetch was not made up)"


def test_an_event_ts_the_gate_would_refuse_is_not_published_as_the_event_time_attribute() -> None:
    """Dataflow's source stamps event time from the attribute and stops the load on one it
    cannot parse; the payload still goes, for the gate to dead-letter."""
    name = f"garbled-{uuid.uuid4()}"
    publish = PublishQuotesFn(partial(shared_publisher, name), "quotes")
    publish.setup()
    publish.start_bundle()
    good = MarketSimulator(9, PAIR_CATALOG).latest(PAIR_CATALOG["USD-BRL"], START_MS).to_dict()
    for event_ts in (good["event_ts"], "yesterday", "2026-11-24T10:00:00Z", 17):
        publish.process({**good, "event_ts": event_ts})
    publish.finish_bundle()

    attributes = [m.attributes for m in shared_publisher(name).messages]
    assert [a.get("event_ts") for a in attributes] == [good["event_ts"], None, None, None]
    assert all(a["event_id"] == good["event_id"] for a in attributes)


def test_a_quote_without_an_event_id_is_published_without_the_attribute() -> None:
    """On Dataflow the load deduplicates by the event_id attribute: an empty one would make
    every quote without an id (an OANDA price with an unreadable time) one message."""
    name = f"no-id-{uuid.uuid4()}"
    publish = PublishQuotesFn(partial(shared_publisher, name), "quotes")
    publish.setup()
    publish.start_bundle()
    good = MarketSimulator(9, PAIR_CATALOG).latest(PAIR_CATALOG["USD-BRL"], START_MS).to_dict()
    publish.process({**good, "event_id": "", "event_ts": "yesterday"})
    publish.process({**good, "pair": ""})
    publish.finish_bundle()

    attributes = [m.attributes for m in shared_publisher(name).messages]
    assert attributes == [
        {"pair": "USD-BRL"},
        {"event_id": good["event_id"], "event_ts": good["event_ts"]},
    ]


def test_a_failing_primary_hands_each_pair_to_the_fallback_and_takes_it_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The chain's state goes through the pair's keyed state: each pair switches to the
    fallback (another market, seed 10) while the primary fails, and back once it answers;
    every quote published once."""
    name = f"failover-{uuid.uuid4()}"
    pairs = ["USD-BRL", "EUR-USD"]
    with caplog.at_level("INFO", logger="quotestream.beam.extract"), direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(range(16))
            | ExtractQuotes(
                pairs,
                # Calls 4 to 13 of the primary fail: both pairs' for a few ticks.
                partial(SimulatedSource, seed=9, name=name, failing=range(4, 14)),
                partial(shared_publisher, name),
                "quotes",
                lag_ms=0,
                first_lookback_ms=2000,
                clock=StepClock(name, START_MS),
                fallback=Fallback(
                    partial(SimulatedSource, seed=10, name=f"{name}-fallback"),
                    name="feed",
                    primary_name="sim",
                    after_ms=3000,
                    probe_every_ms=3000,
                ),
            )
        )
    quotes = [
        parse_quote(m.data, m.attributes, now_ms=START_MS + 10**9)
        for m in shared_publisher(name).messages
    ]
    assert len({q.event_id for q in quotes}) == len(quotes), "a quote was published twice"
    assert calls_made(f"{name}-fallback") > 0, "the fallback was never asked"
    for pair in pairs:
        assert f"{pair}: switched from sim to feed: sim failing" in caplog.text
        assert f"{pair}: switched from feed to sim: sim answers again" in caplog.text
    fallback = MarketSimulator(10, PAIR_CATALOG)
    served = {
        q.event_id
        for pair in pairs
        for _, q in fallback.quotes_between(PAIR_CATALOG[pair], START_MS - 2000, START_MS + 40_000)
    }
    assert any(q.event_id in served for q in quotes), "no quote of the fallback's market"
