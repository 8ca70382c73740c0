"""The local Pub/Sub edge of the load: a message is acknowledged only once its quote row or
dead-letter row is stored, and a redelivered message is stored once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any
from unittest import mock

import apache_beam as beam
import pytest
from google.api_core.exceptions import ServiceUnavailable

from quotestream.beam.load import STORED, LoadQuotes
from quotestream.beam.messages import RawMessage
from quotestream.beam.pull import AcknowledgeStored, PullMessagesFn, pending_acks
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.quote import now_ms
from quotestream_dev.synthetic import fresh_quote
from tests.beam.test_load import good_messages
from tests.support.corpus import bad_messages
from tests.support.fakes import InMemoryStoredRowLookups, InMemoryWarehouse
from tests.support.pipelines import direct_pipeline
from tests.support.table_writers import table_writer_of

pytestmark = pytest.mark.unit

SUBSCRIPTION = "projects/p/subscriptions/s"


@dataclass
class InMemorySubscriber:
    """Pub/Sub's pull and acknowledge as SubscriberClient answers them, over a queue."""

    queue: list[Any] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        assert request["subscription"] == SUBSCRIPTION
        with self._lock:
            taken = self.queue[: request["max_messages"]]
            del self.queue[: request["max_messages"]]
        return SimpleNamespace(received_messages=taken)

    def acknowledge(self, request: dict[str, Any], timeout: float) -> None:
        assert request["subscription"] == SUBSCRIPTION
        with self._lock:
            self.acked.extend(request["ack_ids"])

    def close(self) -> None:
        pass


@dataclass
class ForgetfulWarehouse(InMemoryWarehouse):
    """A warehouse whose insert-id dedup has forgotten everything (as BigQuery's does after a
    minute), answering the load's lookup of stored row ids."""

    def insert_rows(
        self, table: str, rows: list[dict[str, Any]], row_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        fresh = [f"{row_id}#{uuid.uuid4().hex}" for row_id in row_ids or []]
        return super().insert_rows(table, rows, fresh or None)


_SUBSCRIBERS: dict[str, InMemorySubscriber] = {}
_WAREHOUSES: dict[str, ForgetfulWarehouse] = {}
_QUERIES: dict[str, UnansweringQueries] = {}


def shared_subscriber(name: str) -> InMemorySubscriber:
    return _SUBSCRIBERS.setdefault(name, InMemorySubscriber())


def shared_forgetful_warehouse(name: str) -> ForgetfulWarehouse:
    return _WAREHOUSES.setdefault(name, ForgetfulWarehouse())


@dataclass
class UnansweringQueries(InMemoryStoredRowLookups):
    """Leaves its next `unanswered` lookups of stored quotes unanswered, as BigQuery away."""

    unanswered: int = 0

    def stored_quote_ids(self, event_times: Any) -> set[str]:
        if self.unanswered > 0:
            self.unanswered -= 1
            raise ServiceUnavailable("BigQuery away (fake)")
        return super().stored_quote_ids(event_times)


def forgetful_queries(name: str) -> UnansweringQueries:
    return _QUERIES.setdefault(name, UnansweringQueries(shared_forgetful_warehouse(name)))


def pull_fn(name: str, job: str, max_messages: int = 1000) -> PullMessagesFn:
    return PullMessagesFn(
        SUBSCRIPTION,
        partial(shared_subscriber, name),
        partial(forgetful_queries, name),
        job,
        max_messages,
    )


def received(message: RawMessage, ack_id: str, attempt: int) -> Any:
    return SimpleNamespace(
        ack_id=ack_id,
        delivery_attempt=attempt,
        message=SimpleNamespace(
            data=message.data, attributes=message.attributes, message_id=message.message_id
        ),
    )


def test_a_pull_takes_what_is_there_leaves_it_pending_and_acknowledges_nothing() -> None:
    name = f"pull-{uuid.uuid4()}"
    subscriber = shared_subscriber(name)
    messages = good_messages(now_ms(), 5)
    subscriber.queue = [received(m, f"ack-{i}", 1 + i % 2) for i, m in enumerate(messages)]
    pull = pull_fn(name, job=name, max_messages=3)
    pull.setup()
    first, second, third = (list(pull.process(tick)) for tick in range(3))
    # Each with the quote the gate made of it, so the gate does not parse it again.
    assert [m._replace(judged=None) for m in first + second] == messages
    assert [m.judged.event_id for m in first + second if m.judged] == [
        m.attributes["event_id"] for m in messages
    ]
    assert third == []
    assert len(pending_acks(name)) == len(messages)
    assert subscriber.acked == []


@dataclass
class HundredAtATime(InMemorySubscriber):
    """Answers a pull with a hundred messages at most, as the emulator does; counts pulls."""

    pulls: int = 0

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        self.pulls += 1
        return super().pull({**request, "max_messages": min(request["max_messages"], 100)}, timeout)


def hundred_at_a_time(name: str, max_messages: int) -> tuple[HundredAtATime, PullMessagesFn]:
    """250 messages waiting on a subscriber that answers a hundred a pull, and a source."""
    subscriber = _SUBSCRIBERS[name] = HundredAtATime()
    messages = [
        m._replace(message_id=f"m{i}") for i, m in enumerate(good_messages(now_ms(), 50) * 5)
    ]
    subscriber.queue = [received(m, f"ack-{i}", 1) for i, m in enumerate(messages)]
    pull = pull_fn(name, job=name, max_messages=max_messages)
    pull.setup()
    return subscriber, pull


def test_a_tick_pulls_until_it_has_enough_or_the_subscription_is_empty() -> None:
    subscriber, pull = hundred_at_a_time(f"pull-many-{uuid.uuid4()}", max_messages=200)

    assert len(list(pull.process(0))) == 200
    assert subscriber.pulls == 2
    assert len(list(pull.process(1))) == 50
    assert subscriber.pulls == 4  # the second pull of that tick found nothing


def test_a_tick_pulls_only_what_the_messages_in_flight_leave_room_for() -> None:
    name = f"pull-room-{uuid.uuid4()}"
    subscriber = _SUBSCRIBERS[name] = HundredAtATime()
    messages = [m._replace(message_id=f"m{i}") for i, m in enumerate(good_messages(now_ms(), 50))]
    subscriber.queue = [received(m, f"ack-{i}", 1) for i, m in enumerate(messages)]
    pull = PullMessagesFn(
        SUBSCRIPTION,
        partial(shared_subscriber, name),
        partial(forgetful_queries, name),
        name,
        max_messages=1_000,
        lease_s=30,
        max_in_flight=20,
    )
    pull.setup()

    first = list(pull.process(0))
    assert len(first) == 20
    assert list(pull.process(1)) == []
    assert subscriber.pulls == 1  # held back without asking Pub/Sub
    pending_acks(name).settle(("message", "m0"))
    pending_acks(name).settle(("message", "m1"))
    assert [m.message_id for m in pull.process(2)] == ["m20", "m21"]


def test_messages_in_flight_are_those_pulled_within_the_lease_and_not_settled() -> None:
    pending = pending_acks(f"flight-{uuid.uuid4()}")
    for second in range(10):
        pending.add(f"ack-{second}", f"m{second}", [("message", f"m{second}")], pulled_at=second)
    pending.settle(("message", "m8"))

    assert pending.in_flight(within_s=5, now=10) == 4  # pulled at 5, 6, 7 and 9
    assert pending.in_flight(within_s=60, now=10) == 9
    # Delivered again, a message is in flight from its newest pull.
    pending.add("ack-0-again", "m0", [("message", "m0")], pulled_at=10)
    assert pending.in_flight(within_s=5, now=10) == 5


def test_a_tick_stops_pulling_once_its_messages_hold_enough_bytes() -> None:
    subscriber, pull = hundred_at_a_time(f"pull-bytes-{uuid.uuid4()}", max_messages=1_000)

    with mock.patch("quotestream.beam.pull.MAX_BUNDLE_BYTES", 1_000):
        assert len(list(pull.process(0))) == 100
    assert subscriber.pulls == 1


def load_in_turn(
    deliveries: list[list[Any]], name: str, *, acknowledge: bool = False, streaming: bool = True
) -> None:
    """Each batch of deliveries pulled by its own load job (a job run, then the next after a
    crash), writing to the shared warehouse `name`; acknowledging what was stored if asked."""
    for batch in deliveries:
        shared_subscriber(name).queue = list(batch)
        job = f"{name}-{uuid.uuid4()}"
        with direct_pipeline(streaming=streaming) as pipeline:
            loaded = (
                pipeline
                | beam.Create([None])
                | "Pull" >> beam.ParDo(pull_fn(name, job))
                | LoadQuotes(
                    partial(table_writer_of, partial(shared_forgetful_warehouse, name)),
                    partial(forgetful_queries, name),
                )
            )
            if acknowledge:
                for path, rows in loaded[STORED].items():
                    _ = rows | f"Acknowledge{path}" >> AcknowledgeStored(
                        SUBSCRIPTION, partial(shared_subscriber, name), job
                    )
        assert shared_subscriber(name).queue == []


def test_each_message_is_acknowledged_once_its_row_is_stored_and_never_twice_stored() -> None:
    name = f"ack-{uuid.uuid4()}"
    warehouse = shared_forgetful_warehouse(name)
    subscriber = shared_subscriber(name)
    now = now_ms()
    good = good_messages(now, 60)
    bad = [message for message, _ in bad_messages(now)]

    def delivered(messages: list[RawMessage], attempt: int) -> list[Any]:
        return [received(m, f"{m.message_id}@{attempt}", attempt) for m in messages]

    # The first deliveries are stored; then a crash before their acknowledgement: all of
    # them, and 20 never stored, come again after the ack deadline.
    first = delivered(good[:40] + bad, 1)
    again = delivered(good + bad, 2)
    load_in_turn([first, again], name, acknowledge=True)

    assert sorted(subscriber.acked) == sorted(d.ack_id for d in first + again)
    quotes = [r["event_id"] for r in warehouse.rows("quotes")]
    assert sorted(quotes) == sorted(m.attributes["event_id"] for m in good)
    dead = [r["message_id"] for r in warehouse.rows("quotes_dead_letter")]
    assert sorted(dead) == sorted(m.message_id for m in bad)
    looked_up = {row_id for ids in forgetful_queries(name).lookups for row_id in ids}
    assert {m.attributes["event_id"] for m in good} <= looked_up


@pytest.mark.parametrize("dead_letter_refused", [False, True])
def test_a_row_bigquery_refuses_is_acknowledged_only_once_its_dead_letter_row_is_stored(
    dead_letter_refused: bool,
) -> None:
    name = f"refused-{uuid.uuid4()}"
    warehouse = shared_forgetful_warehouse(name)
    refusing = {"quotes", "quotes_dead_letter"} if dead_letter_refused else {"quotes"}
    warehouse.reject = lambda table, row: "no" if table in refusing else None
    subscriber = shared_subscriber(name)
    messages = [received(m, f"ack-{i}", 1) for i, m in enumerate(good_messages(now_ms(), 10))]
    load_in_turn([messages], name, acknowledge=True, streaming=False)
    assert warehouse.rows("quotes") == []
    if dead_letter_refused:
        # Unacknowledged: Pub/Sub delivers them again, then dead-letters them to its topic.
        assert warehouse.rows("quotes_dead_letter") == []
        assert subscriber.acked == []
    else:
        assert len(warehouse.rows("quotes_dead_letter")) == len(messages)
        assert sorted(subscriber.acked) == sorted(f"ack-{i}" for i in range(len(messages)))


def test_a_quote_published_again_after_the_insert_id_window_is_stored_once() -> None:
    """Fresh deliveries, as Dataflow's own source gives them (nothing to acknowledge), each
    batch to a job of its own: a copy of a quote stamped before the job began is found
    stored, however young."""
    name = f"republish-{uuid.uuid4()}"
    warehouse = shared_forgetful_warehouse(name)
    now = now_ms()
    old = good_messages(now, 30)  # 60-120 s old
    fresh = [
        RawMessage(q.to_json(), q.pubsub_attributes(), f"fresh-{i}")
        for i, q in enumerate(
            fresh_quote(spec, i, f"fresh{i}") for i, spec in enumerate(PAIR_CATALOG.values())
        )
    ]
    again = [m._replace(message_id=f"{m.message_id}-again") for m in old]
    for batch in (old + fresh, again):
        with direct_pipeline(streaming=True) as pipeline:
            _ = (
                pipeline
                | beam.Create(batch)
                | LoadQuotes(
                    partial(table_writer_of, partial(shared_forgetful_warehouse, name)),
                    partial(forgetful_queries, name),
                )
            )

    quotes = [r["event_id"] for r in warehouse.rows("quotes")]
    assert sorted(quotes) == sorted(m.attributes["event_id"] for m in old + fresh)
    asked = Counter(event_id for ids in forgetful_queries(name).lookups for event_id in ids)
    # Each quote asked for by its id when first written (stamped before the first job began,
    # which its shard's memory cannot vouch for), and the old ones again as copies.
    assert all(asked[m.attributes["event_id"]] == 2 for m in old)
    assert all(asked[m.attributes["event_id"]] == 1 for m in fresh)


def fresh_messages(count: int) -> list[RawMessage]:
    """Quotes stamped now: younger than what the writer looks up unless redelivered."""
    specs = list(PAIR_CATALOG.values())
    return [
        RawMessage(q.to_json(), q.pubsub_attributes(), f"young-{i}")
        for i, q in enumerate(
            fresh_quote(specs[i % len(specs)], i, f"young{i}") for i in range(count)
        )
    ]


def test_a_redelivered_young_quote_is_looked_up_and_stored_once() -> None:
    name = f"young-{uuid.uuid4()}"
    warehouse = shared_forgetful_warehouse(name)
    young = fresh_messages(12)
    first = [received(m, f"{m.message_id}@1", 1) for m in young]
    again = [received(m, f"{m.message_id}@2", 2) for m in young]
    load_in_turn([first, again], name, acknowledge=True)

    assert sorted(r["event_id"] for r in warehouse.rows("quotes")) == sorted(
        m.attributes["event_id"] for m in young
    )
    looked_up = {row_id for ids in forgetful_queries(name).lookups for row_id in ids}
    # Looked up as they came again, with the dead letters each could have become, at the
    # source (and by the writer, as each job's first batch goes to a new stream).
    assert looked_up == {m.attributes["event_id"] for m in young} | {
        row_id for m in young for row_id in (f"parse:{m.message_id}", refused_dead_letter_id(m))
    }
    assert sorted(shared_subscriber(name).acked) == sorted(d.ack_id for d in first + again)


def refused_dead_letter_id(message: RawMessage) -> str:
    return f"bigquery_insert:quotes:{message.attributes['event_id']}"


def test_a_refused_copy_of_a_stored_quote_is_dead_lettered_not_settled_by_that_quote() -> None:
    """The same bytes with attributes that contradict them: the gate refuses the copy, so the
    quote's row must not settle it, neither in one pull nor when it comes again."""
    name = f"copy-{uuid.uuid4()}"
    warehouse = shared_forgetful_warehouse(name)
    subscriber = shared_subscriber(name)
    (quote,) = fresh_messages(1)
    copies = [
        RawMessage(quote.data, {**quote.attributes, "pair": "XAU-USD"}, f"copy-{i}")
        for i in range(2)
    ]
    together = [received(quote, "quote@1", 1), received(copies[0], "copy-0@1", 1)]
    later = [received(copies[1], "copy-1@2", 2)]
    load_in_turn([together, later], name, acknowledge=True)

    assert [r["event_id"] for r in warehouse.rows("quotes")] == [quote.attributes["event_id"]]
    dead = warehouse.rows("quotes_dead_letter")
    assert sorted((r["message_id"], r["reason"]) for r in dead) == [
        ("copy-0", "attribute_mismatch"),
        ("copy-1", "attribute_mismatch"),
    ]
    assert sorted(subscriber.acked) == ["copy-0@1", "copy-1@2", "quote@1"]


def test_what_the_source_cannot_read_or_look_up_goes_through_the_gate() -> None:
    """A payload nested past the gate's limit, redelivered while BigQuery does not answer the
    lookup: nothing fails, the gate dead-letters it and its quote-shaped neighbour is loaded."""
    name = f"unreadable-{uuid.uuid4()}"
    warehouse = shared_forgetful_warehouse(name)
    forgetful_queries(name).unanswered = 1
    nested = RawMessage(b"[" * 2000, {}, "nested")
    (quote,) = fresh_messages(1)
    load_in_turn(
        [[received(nested, "nested@2", 2), received(quote, "quote@2", 2)]], name, acknowledge=True
    )

    assert [r["reason"] for r in warehouse.rows("quotes_dead_letter")] == ["malformed_json"]
    assert [r["event_id"] for r in warehouse.rows("quotes")] == [quote.attributes["event_id"]]
    assert sorted(shared_subscriber(name).acked) == ["nested@2", "quote@2"]


@dataclass
class FlakyWarehouse(ForgetfulWarehouse):
    """Does not answer its first `failures` inserts, as BigQuery away or overloaded."""

    failures: int = 2

    def insert_rows(
        self, table: str, rows: list[dict[str, Any]], row_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        if table == "quotes" and self.failures > 0:
            self.failures -= 1
            raise ServiceUnavailable("BigQuery away (fake)")
        return super().insert_rows(table, rows, row_ids)


_FLAKY: dict[str, FlakyWarehouse] = {}


def flaky_warehouse(name: str) -> FlakyWarehouse:
    return _FLAKY.setdefault(name, FlakyWarehouse())


def flaky_queries(name: str) -> InMemoryStoredRowLookups:
    return InMemoryStoredRowLookups(flaky_warehouse(name))


def test_a_writer_that_does_not_answer_is_waited_for_and_nothing_is_lost() -> None:
    name = f"flaky-{uuid.uuid4()}"
    warehouse = flaky_warehouse(name)
    messages = fresh_messages(10)
    with direct_pipeline(streaming=True) as pipeline:
        _ = (
            pipeline
            | beam.Create(messages)
            | LoadQuotes(
                partial(table_writer_of, partial(flaky_warehouse, name)),
                partial(flaky_queries, name),
            )
        )
    assert warehouse.failures == 0
    assert sorted(r["event_id"] for r in warehouse.rows("quotes")) == sorted(
        m.attributes["event_id"] for m in messages
    )


def test_a_settled_message_is_forgotten_under_every_key_it_was_pending_under() -> None:
    pending = pending_acks(f"settle-{uuid.uuid4()}")
    pending.add("ack-1", "m1", [("message", "m1"), ("event", "e1"), ("message", "quotes:e1")])
    pending.add("ack-2", "m2", [("message", "m2"), ("event", "e1"), ("message", "quotes:e1")])
    pending.add("ack-3", "m3", [("message", "m3")])

    assert sorted(pending.settle(("event", "e1"))) == ["ack-1", "ack-2"]
    assert pending.settle(("message", "quotes:e1")) == []
    assert pending.settle(("message", "m1")) == []
    assert len(pending) == 1
    assert pending.settle(("message", "m3")) == ["ack-3"]
    assert len(pending) == 0


def test_a_message_delivered_again_is_pending_once_under_its_newest_delivery() -> None:
    pending = pending_acks(f"again-{uuid.uuid4()}")
    for attempt in range(1, 6):
        pending.add(f"m1@{attempt}", "m1", [("message", "m1")])
    assert len(pending) == 1
    assert pending.settle(("message", "m1")) == ["m1@5"]
    assert len(pending) == 0
