"""The local Pub/Sub edge of the load: a source that pulls, and an acknowledger that settles
each message once its quote row or dead-letter row is stored.

The DirectRunner's ReadFromPubSub acknowledges messages as it pulls them, so a local job
killed mid-bundle loses what it held. Here a message stays unacknowledged until the load has
stored what it became; whatever a dead job held comes again after the subscription's ack
deadline. The load's transforms carry plain quotes and rows: the source asks the gate what
each pulled message can become and notes it as pending under those rows (its quote's event id
if the gate accepts it, its own message id as a dead letter), and the acknowledger, given the
stored rows, finds the messages to acknowledge. Both run in the one process of a local job.
(Dataflow's own source acknowledges after its durable commit, so Google Cloud keeps
ReadFromPubSub.)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PBegin, PCollection
from google.api_core.exceptions import GoogleAPICallError, RetryError
from google.pubsub_v1.types import PullResponse

from quotestream.beam.messages import RawMessage
from quotestream.beam.parse import NAMESPACE
from quotestream.beam.sinks import TRANSIENT, LookupsFactory
from quotestream.beam.ticks import Ticks
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import Quote
from quotestream.domain.rows import dead_letter_row_id, refused_row_id
from quotestream.domain.schemas import QUOTES
from quotestream.domain.validation import parse_quote

# A google.cloud.pubsub_v1.SubscriberClient, or anything answering its pull and acknowledge.
SubscriberFactory = Callable[[], Any]
# Pub/Sub's limit is 512 KB per request; ack ids are about 200 bytes.
_ACK_CHUNK = 1000
# A tick stops pulling once its messages hold this much (a message may hold 10 MB, and each
# the gate refuses keeps up to 64 KB in its dead-letter row).
MAX_BUNDLE_BYTES = 32 * 2**20
# The pull waits while this many pulled messages are not settled yet: the load's write step is
# a stage of its own, and a pull that outran it would hold messages past their lease (they
# would come again while still being written). A few seconds of the local writer's pace.
MAX_IN_FLIGHT = 10_000
# What a stored row settles: ("event", event_id) for a quote row, ("message", message_id)
# for a dead-letter row (a refused quote row's dead letter is named after its event id).
SettlementKey = tuple[str, str]

log = logging.getLogger(__name__)


@dataclass
class PendingAcks:
    """The pulled messages of one local job not acknowledged yet, by what would settle them."""

    _ack_ids: dict[SettlementKey, set[str]] = field(default_factory=dict)
    _keys: dict[str, list[SettlementKey]] = field(default_factory=dict)
    # When each was pulled, oldest first (a dict keeps its insertion order).
    _pulled_at: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        ack_id: str,
        message_id: str | None,
        keys: list[SettlementKey],
        pulled_at: float | None = None,
    ) -> None:
        with self._lock:
            # A message delivered again supersedes its earlier delivery, whose ack id has
            # expired: one entry per message, however often a message no row settles comes.
            if message_id:
                for earlier in list(self._ack_ids.get(("message", message_id), ())):
                    self._forget(earlier)
            self._keys[ack_id] = keys
            self._pulled_at[ack_id] = time.monotonic() if pulled_at is None else pulled_at
            for key in keys:
                self._ack_ids.setdefault(key, set()).add(ack_id)

    def in_flight(self, within_s: float, now: float | None = None) -> int:
        """How many were pulled in the last `within_s` seconds and are not settled yet. Older
        ones count no more: their lease is over and Pub/Sub delivers them again anyway."""
        since = (time.monotonic() if now is None else now) - within_s
        with self._lock:
            young = 0
            for pulled_at in reversed(self._pulled_at.values()):
                if pulled_at < since:
                    break
                young += 1
            return young

    def settle(self, key: SettlementKey) -> list[str]:
        """The ack ids the stored row `key` settles, forgotten from here on."""
        with self._lock:
            settled = list(self._ack_ids.get(key, ()))
            for ack_id in settled:
                self._forget(ack_id)
            return settled

    def _forget(self, ack_id: str) -> None:
        self._pulled_at.pop(ack_id, None)
        for key in self._keys.pop(ack_id, ()):
            waiting = self._ack_ids.get(key)
            if waiting is not None:
                waiting.discard(ack_id)
                if not waiting:
                    del self._ack_ids[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


# By job: DoFns are pickled, so the source and the acknowledger meet here, in the process.
_PENDING: dict[str, PendingAcks] = {}


def pending_acks(job: str) -> PendingAcks:
    return _PENDING.setdefault(job, PendingAcks())


def settlement_key(row: Mapping[str, Any]) -> SettlementKey:
    if "stage" in row:
        return ("message", str(row["message_id"]))
    return ("event", str(row["event_id"]))


# Whether a quote is dated ahead of the clock is the gate's one verdict that changes with
# time: the source asks the gate without it, so it notes what such a quote may become.
_WITHOUT_FUTURE_CHECK_MS = 2**62


@dataclass(frozen=True)
class Outcome:
    """What a pulled message can end as, by the gate's verdict: the stored rows that would
    settle it, its quote (if the gate accepts it) and the ids of its possible dead letters."""

    keys: list[SettlementKey]
    quote: Quote | None
    dead_letter_ids: set[str]

    @classmethod
    def of(
        cls, message_id: str | None, data: bytes, attributes: Mapping[str, str], catalog: Any
    ) -> Outcome:
        keys: list[SettlementKey] = []
        dead_letter_ids = set()
        if message_id:
            keys.append(("message", message_id))
            dead_letter_ids.add(dead_letter_row_id({"stage": "parse", "message_id": message_id}))
        try:
            quote = parse_quote(data, attributes, pairs=catalog, now_ms=_WITHOUT_FUTURE_CHECK_MS)
        except Exception:  # refused by the gate, or a gate bug the load dead-letters alike
            return cls(keys, None, dead_letter_ids)
        refused = refused_row_id(QUOTES.name, quote.event_id)
        keys += [("event", quote.event_id), ("message", refused)]
        dead_letter_ids.add(dead_letter_row_id({"stage": "bigquery_insert", "message_id": refused}))
        return cls(keys, quote, dead_letter_ids)

    def stored_in(self, quote_ids: set[str], dead_letter_ids: set[str]) -> bool:
        """Whether one of the rows this message can end as is among those found stored."""
        if self.quote is not None and self.quote.event_id in quote_ids:
            return True
        return not self.dead_letter_ids.isdisjoint(dead_letter_ids)


class PullMessagesFn(beam.DoFn):
    """tick -> what the subscription has right now, at most `max_messages`, each noted as
    pending; nothing while `max_in_flight` pulled within the lease are pending still. A
    message delivered again whose row is stored already is acknowledged here and goes no
    further: BigQuery's insert-id dedup may have forgotten its first insert."""

    def __init__(
        self,
        subscription: str,
        subscriber_factory: SubscriberFactory,
        lookups_factory: LookupsFactory,
        job: str,
        max_messages: int,
        pairs: Sequence[str] | None = None,
        lease_s: float = 60,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._subscription = subscription
        self._factory = subscriber_factory
        self._lookups_factory = lookups_factory
        self._job = job
        self._max_messages = max_messages
        self._pairs = tuple(pairs) if pairs else tuple(PAIR_CATALOG)
        self._lease_s = lease_s
        self._max_in_flight = max_in_flight
        self.pulled = Metrics.counter(NAMESPACE, "pulled")
        self.held_back = Metrics.counter(NAMESPACE, "pulls_held_back")
        self.redelivered = Metrics.counter(NAMESPACE, "redelivered")
        self.already_stored = Metrics.counter(NAMESPACE, "redelivered_already_stored")

    def setup(self) -> None:
        self._subscriber = self._factory()
        self._lookups = self._lookups_factory()
        self._pending = pending_acks(self._job)
        self._catalog = {pair: PAIR_CATALOG[pair] for pair in self._pairs}
        self._failed_pulls = 0
        self._next_failure_log = 0.0

    def process(self, _tick: Any) -> Iterator[RawMessage]:
        room = self._max_in_flight - self._pending.in_flight(self._lease_s)
        if room <= 0:
            self.held_back.inc()
            return
        received = self._pull(min(self._max_messages, room))
        # delivery_attempt is 0 when the subscription has no dead-letter policy: unknown,
        # so treated as a possible redelivery.
        again = [item for item in received if item.delivery_attempt != 1]
        self.pulled.inc(len(received))
        if again:
            self.redelivered.inc(len(again))
            log.info("pulled %d messages, %d of them redelivered", len(received), len(again))
        outcomes = {
            item.ack_id: Outcome.of(
                item.message.message_id, item.message.data, item.message.attributes, self._catalog
            )
            for item in received
        }
        stored = self._stored_already([item.ack_id for item in again], outcomes)
        if stored:
            self.already_stored.inc(len(stored))
            log.info("%d redelivered messages were stored already: acknowledged", len(stored))
            acknowledge(self._subscriber, self._subscription, sorted(stored))
        for item in received:
            if item.ack_id in stored:
                continue
            message, outcome = item.message, outcomes[item.ack_id]
            self._pending.add(item.ack_id, message.message_id, outcome.keys)
            yield RawMessage(
                bytes(message.data), dict(message.attributes), message.message_id, outcome.quote
            )

    def _pull(self, wanted: int) -> list[Any]:
        """What the subscription has right now, up to `wanted`: a pull answers with a
        hundred or so at a time, and each bundle's inserts cost about the same whatever their
        size, so a tick pulls until it has enough or the subscription is empty, and the next
        tick polls again."""
        received: list[Any] = []
        held = 0
        while len(received) < wanted and held < MAX_BUNDLE_BYTES:
            more = self._pull_once(wanted - len(received))
            if not more:
                break
            received += more
            held += sum(len(item.message.data) for item in more)
        return received

    def _pull_once(self, max_messages: int) -> list[Any]:
        try:
            response = self._subscriber.pull(
                request={
                    "subscription": self._subscription,
                    "max_messages": max_messages,
                    "return_immediately": True,
                },
                timeout=30,
            )
        except (GoogleAPICallError, RetryError) as error:
            # Pub/Sub away (an emulator restarting): the job waits for it, tick after tick,
            # and says so again each minute, in case it is for good (a lost subscription).
            if self._failed_pulls == 0 or time.monotonic() >= self._next_failure_log:
                log.warning(
                    "pull from %s failed (%d times so far), retrying: %s",
                    self._subscription,
                    self._failed_pulls + 1,
                    error,
                )
                self._next_failure_log = time.monotonic() + 60
            self._failed_pulls += 1
            return []
        if self._failed_pulls:
            log.warning("Pub/Sub back after %d failed pulls", self._failed_pulls)
            self._failed_pulls = 0
        return list(_unwrapped(response).received_messages)

    def _stored_already(self, again: list[str], outcomes: Mapping[str, Outcome]) -> set[str]:
        """The ack ids (of `again`, redelivered) whose quote row or dead-letter row is stored.
        Should BigQuery not answer, none: they go through the load, whose writer still looks
        up old quotes, with insert-id dedup behind it."""
        if not again:
            return set()
        quote_times = {
            quote.event_id: datetime.fromtimestamp(quote.event_ts_ms / 1000, tz=UTC)
            for ack_id in again
            if (quote := outcomes[ack_id].quote) is not None
        }
        dead_letter_ids = {
            row_id for ack_id in again for row_id in outcomes[ack_id].dead_letter_ids
        }
        try:
            quotes = self._lookups.stored_quote_ids(quote_times)
            dead = self._lookups.stored_dead_letter_ids(dead_letter_ids)
        except TRANSIENT as error:
            log.warning(
                "could not look up %d redelivered messages, loading them: %s", len(again), error
            )
            return set()
        return {ack_id for ack_id in again if outcomes[ack_id].stored_in(quotes, dead)}

    def teardown(self) -> None:
        for client in (getattr(self, "_subscriber", None), getattr(self, "_lookups", None)):
            if client is not None:
                client.close()


def _unwrapped(response: Any) -> Any:
    """The protobuf beneath the client's PullResponse: proto-plus converts every field it is
    asked for, which cost a fifth of a local load's CPU."""
    return PullResponse.pb(response) if isinstance(response, PullResponse) else response


def acknowledge(subscriber: Any, subscription: str, ack_ids: list[str]) -> int:
    """Acknowledges in chunks; returns how many did not go through. Those cost a
    redelivery, never data: the message comes again and its row is found stored."""
    failed = 0
    for start in range(0, len(ack_ids), _ACK_CHUNK):
        chunk = ack_ids[start : start + _ACK_CHUNK]
        try:
            subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": chunk}, timeout=30
            )
        except (GoogleAPICallError, RetryError) as error:
            failed += len(chunk)
            log.warning(
                "could not acknowledge %d messages (they come again, found stored): %s",
                len(chunk),
                error,
            )
    return failed


class PullFromPubSub(beam.PTransform[Any, Any]):
    """PBegin -> RawMessage, polled every `interval_s`, pending until AcknowledgeStored
    settles them, or they come again."""

    def __init__(
        self,
        subscription: str,
        subscriber_factory: SubscriberFactory,
        lookups_factory: LookupsFactory,
        job: str,
        pairs: Sequence[str] | None = None,
        lease_s: float = 60,
        interval_s: float = 0.2,
        max_messages: int = 5_000,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._pull = PullMessagesFn(
            subscription, subscriber_factory, lookups_factory, job, max_messages, pairs, lease_s
        )

    def expand(self, begin: PBegin) -> PCollection[Any]:
        return (
            begin
            | "Ticks" >> Ticks(self._interval_s, paced=True)
            | "Pull" >> beam.ParDo(self._pull)
        )


class AcknowledgeFn(beam.DoFn):
    """Stored rows -> the messages they settle, acknowledged together when the bundle ends."""

    def __init__(self, subscription: str, subscriber_factory: SubscriberFactory, job: str) -> None:
        self._subscription = subscription
        self._factory = subscriber_factory
        self._job = job
        self.acknowledged = Metrics.counter(NAMESPACE, "acknowledged")
        self.unacknowledged = Metrics.counter(NAMESPACE, "unacknowledged")

    def setup(self) -> None:
        self._subscriber = self._factory()
        self._pending = pending_acks(self._job)

    def start_bundle(self) -> None:
        self._ack_ids: list[str] = []

    def process(self, row: dict[str, Any]) -> None:
        self._ack_ids.extend(self._pending.settle(settlement_key(row)))

    def finish_bundle(self) -> None:
        failed = acknowledge(self._subscriber, self._subscription, self._ack_ids)
        self.unacknowledged.inc(failed)
        self.acknowledged.inc(len(self._ack_ids) - failed)
        self._ack_ids = []

    def teardown(self) -> None:
        subscriber = getattr(self, "_subscriber", None)
        if subscriber is not None:
            subscriber.close()


class AcknowledgeStored(beam.PTransform[Any, Any]):
    """Stored quote rows and dead-letter rows -> their messages acknowledged."""

    def __init__(self, subscription: str, subscriber_factory: SubscriberFactory, job: str) -> None:
        super().__init__()
        self._acknowledge = AcknowledgeFn(subscription, subscriber_factory, job)

    def expand(self, rows: PCollection[Any]) -> PCollection[Any]:
        return rows | "Acknowledge" >> beam.ParDo(self._acknowledge)


@dataclass(frozen=True)
class LocalPubSubEdge:
    """The local load's source and acknowledger, over one subscription."""

    subscription: str
    subscriber_factory: SubscriberFactory
    lookups_factory: LookupsFactory
    # The pairs the load's gate accepts: the source judges each message as the gate will.
    pairs: Sequence[str] | None = None
    # The subscription's ack deadline: how long a pulled message stays leased to this job.
    lease_s: float = 60
    # Names this job's pending messages, which its source and acknowledger share.
    job: str = field(default_factory=lambda: uuid.uuid4().hex)

    def read(self, pipeline: beam.Pipeline) -> PCollection[Any]:
        return pipeline | "PullPubSub" >> PullFromPubSub(
            self.subscription,
            self.subscriber_factory,
            self.lookups_factory,
            self.job,
            self.pairs,
            self.lease_s,
        )

    def settle(self, stored: Mapping[str, PCollection[Any]]) -> None:
        for path, rows in stored.items():
            _ = rows | f"Acknowledge{path}" >> AcknowledgeStored(
                self.subscription, self.subscriber_factory, self.job
            )
