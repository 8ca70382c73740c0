from __future__ import annotations

import base64
import uuid
from collections import Counter
from functools import partial

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from quotestream.beam.load import LoadQuotes, ReadHistory
from quotestream.beam.messages import RawMessage
from quotestream.beam.parse import DEAD_LETTER, QUOTES, ParseQuotes
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import Quote, now_ms
from quotestream.domain.validation import parse_quote
from tests.support.corpus import bad_messages
from tests.support.fakes import shared_lookups, shared_warehouse
from tests.support.pipelines import direct_pipeline
from tests.support.table_writers import table_writer_of

pytestmark = pytest.mark.unit

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def good_messages(now: int, count: int) -> list[RawMessage]:
    market = MarketSimulator(5, PAIR_CATALOG)
    quotes = []
    for spec in PAIR_CATALOG.values():
        quotes += [q for _, q in market.quotes_between(spec, now - 120_000, now - 60_000)]
    return [
        RawMessage(q.to_json(), q.pubsub_attributes(), f"good-{i}")
        for i, q in enumerate(quotes[:count])
    ]


def test_the_gate_routes_each_message_to_exactly_one_output() -> None:
    now = now_ms()
    bad = bad_messages(now)
    good = good_messages(now, 50)
    with direct_pipeline() as pipeline:
        parsed = pipeline | beam.Create([m for m, _ in bad] + good) | ParseQuotes()
        assert_that(
            parsed[QUOTES] | "Ids" >> beam.Map(lambda q: q.event_id),
            equal_to([m.attributes["event_id"] for m in good]),
            label="GoodQuotes",
        )
        assert_that(
            parsed[DEAD_LETTER]
            | "Reasons" >> beam.Map(lambda row: (row["message_id"], row["reason"])),
            equal_to([(m.message_id, reason) for m, reason in bad]),
            label="DeadLetters",
        )


def test_a_message_the_source_judged_is_only_checked_against_the_clock_by_the_gate() -> None:
    """The local source hands the gate the quote it made of a message without the clock
    check: the gate checks the clock alone, and parses anything it did not judge for its
    pairs itself."""
    now = now_ms()
    judged = [m._replace(judged=parse_quote(m.data, m.attributes)) for m in good_messages(now, 20)]
    # Bytes the gate could not parse: only a gate that takes the judged quote accepts it.
    unparsed = market_quote("GBP-USD", now - 60_000)
    ahead = market_quote("EUR-USD", now + 60_000)
    # Judged for pairs the gate does not take: the gate's own verdict counts.
    other = market_quote("BTC-USD", now - 60_000)
    with direct_pipeline() as pipeline:
        parsed = (
            pipeline
            | beam.Create(
                [
                    *judged,
                    RawMessage(b"{", {}, "unparsed", unparsed),
                    RawMessage(ahead.to_json(), ahead.pubsub_attributes(), "ahead", ahead),
                    RawMessage(other.to_json(), other.pubsub_attributes(), "other-pair", other),
                ]
            )
            | ParseQuotes([pair for pair in PAIR_CATALOG if pair != "BTC-USD"])
        )
        assert_that(
            parsed[QUOTES] | "Ids" >> beam.Map(lambda q: q.event_id),
            equal_to([m.attributes["event_id"] for m in judged] + [unparsed.event_id]),
            label="GoodQuotes",
        )
        assert_that(
            parsed[DEAD_LETTER]
            | "Reasons" >> beam.Map(lambda row: (row["message_id"], row["reason"])),
            equal_to([("ahead", "future_timestamp"), ("other-pair", "unknown_pair")]),
            label="DeadLetters",
        )


def market_quote(pair: str, event_ms: int) -> Quote:
    ticks = MarketSimulator(5, PAIR_CATALOG).quotes_between(
        PAIR_CATALOG[pair], event_ms, event_ms + 1_000
    )
    return next(quote for _, quote in ticks)


def test_every_message_lands_in_exactly_one_table_and_duplicates_collapse() -> None:
    name = f"load-{uuid.uuid4()}"
    warehouse = shared_warehouse(name)
    now = now_ms()
    bad = bad_messages(now)
    good = good_messages(now, 200)
    redelivered = [m._replace(message_id=f"{m.message_id}-again") for m in good[:30]]
    messages = [m for m, _ in bad] + good + redelivered
    with direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(messages)
            | LoadQuotes(
                partial(table_writer_of, partial(shared_warehouse, name)),
                partial(shared_lookups, name),
            )
        )

    quotes = warehouse.rows("quotes")
    dead = warehouse.rows("quotes_dead_letter")
    assert sorted(r["event_id"] for r in quotes) == sorted(m.attributes["event_id"] for m in good)
    assert Counter(r["reason"] for r in dead) == Counter(reason for _, reason in bad)
    assert {r["message_id"] for r in dead} == {m.message_id for m, _ in bad}
    # Accounting: every message is a quote row (by event id) or a dead-letter row (by id).
    quote_ids = {r["event_id"] for r in quotes}
    dead_ids = {r["message_id"] for r in dead}
    for message in messages:
        in_quotes = message.attributes.get(
            "event_id"
        ) in quote_ids and message.message_id.startswith("good")
        assert in_quotes != (message.message_id in dead_ids), message.message_id
    non_utf8 = next(r for r in dead if r["reason"] == "bad_encoding")
    assert non_utf8["payload_encoding"] == "base64"
    assert base64.b64decode(non_utf8["payload"]).startswith(b"\xff\xfe\xfd")
    assert all(row["ingest_ts"] for row in quotes)


def test_the_live_load_dead_letters_quotes_beyond_its_horizon_with_their_payload() -> None:
    """As from Dataflow's source (the gate parses) and from the local one (the gate gets the
    quote it judged without the clock): a quote older than the horizon is a dead letter
    `too_old` keeping its bytes; without a horizon, as history, it is loaded."""
    now = now_ms()
    good = good_messages(now, 20)
    market = MarketSimulator(5, PAIR_CATALOG)
    days_old = [
        next(q for _, q in market.quotes_between(spec, now - (2 + i) * DAY_MS, now))
        for i, spec in enumerate(PAIR_CATALOG.values())
    ]
    stale = [
        RawMessage(q.to_json(), q.pubsub_attributes(), f"stale-{i}", q if i % 2 else None)
        for i, q in enumerate(days_old)
    ]
    live, history = f"live-{uuid.uuid4()}", f"history-{uuid.uuid4()}"
    for name, horizon in ((live, HOUR_MS), (history, None)):
        with direct_pipeline() as pipeline:
            _ = (
                pipeline
                | beam.Create(good + stale)
                | LoadQuotes(
                    partial(table_writer_of, partial(shared_warehouse, name)),
                    partial(shared_lookups, name),
                    max_quote_age_ms=horizon,
                )
            )

    dead = shared_warehouse(live).rows("quotes_dead_letter")
    assert sorted(r["event_id"] for r in shared_warehouse(live).rows("quotes")) == sorted(
        m.attributes["event_id"] for m in good
    )
    assert sorted((r["message_id"], r["reason"], r["stage"]) for r in dead) == sorted(
        (m.message_id, "too_old", "parse") for m in stale
    )
    assert {r["payload"] for r in dead} == {m.data.decode() for m in stale}
    assert sorted(r["event_id"] for r in shared_warehouse(history).rows("quotes")) == sorted(
        m.attributes["event_id"] for m in good + stale
    )
    assert shared_warehouse(history).rows("quotes_dead_letter") == []


def test_rows_bigquery_rejects_are_dead_lettered_with_its_reason() -> None:
    name = f"reject-{uuid.uuid4()}"
    warehouse = shared_warehouse(name)
    warehouse.reject = lambda table, row: (
        "no BTC today" if table == "quotes" and row.get("pair") == "BTC-USD" else None
    )
    good = good_messages(now_ms(), 10_000)
    with direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(good)
            | LoadQuotes(
                partial(table_writer_of, partial(shared_warehouse, name)),
                partial(shared_lookups, name),
            )
        )

    btc = {m.attributes["event_id"] for m in good if m.attributes["pair"] == "BTC-USD"}
    assert btc
    assert {r["event_id"] for r in warehouse.rows("quotes")} == {
        m.attributes["event_id"] for m in good
    } - btc
    rejected = warehouse.rows("quotes_dead_letter")
    assert {r["message_id"].split(":")[-1] for r in rejected} == btc
    assert {(r["stage"], r["reason"]) for r in rejected} == {
        ("bigquery_insert", "bigquery_rejected")
    }
    assert "no BTC today" in rejected[0]["error"]


class HistorySource:
    """A QuoteSource over the simulator, as the API would serve it."""

    def __init__(self) -> None:
        self.market = MarketSimulator(5, PAIR_CATALOG)

    def history(self, pair: str, start_ms: int, end_ms: int):
        for _, quote in self.market.quotes_between(PAIR_CATALOG[pair], start_ms, end_ms):
            yield quote.to_dict()

    def latest(self, pairs):
        raise AssertionError("the batch path reads history only")

    def close(self) -> None:
        pass


def test_the_batch_path_loads_an_interval_of_history_and_reruns_change_nothing() -> None:
    name = f"backfill-{uuid.uuid4()}"
    warehouse = shared_warehouse(name)
    end = now_ms() - 60_000
    start = end - 120_000
    for _ in range(2):
        with direct_pipeline() as pipeline:
            _ = (
                pipeline
                | ReadHistory(["USD-BRL", "EUR-USD"], HistorySource, start, end)
                | LoadQuotes(
                    partial(table_writer_of, partial(shared_warehouse, name)),
                    partial(shared_lookups, name),
                )
            )
    expected = [
        q.event_id
        for pair in ("USD-BRL", "EUR-USD")
        for _, q in MarketSimulator(5, PAIR_CATALOG).quotes_between(PAIR_CATALOG[pair], start, end)
    ]
    assert sorted(r["event_id"] for r in warehouse.rows("quotes")) == sorted(expected)
    assert warehouse.rows("quotes_dead_letter") == []
    assert warehouse.rows("quote_bars_1m")
