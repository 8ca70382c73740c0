"""The local Pub/Sub source: pull, and acknowledge each message only once its row is stored.

The DirectRunner's ReadFromPubSub acknowledges messages as it pulls them, so a local job
killed mid-bundle loses what it held. Here a message stays unacknowledged until the load has
written its quote row or dead-letter row; whatever a dead job held comes again after the
subscription's ack deadline (Dataflow's own source acknowledges after its durable commit, so
Google Cloud keeps ReadFromPubSub).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PBegin, PCollection
from google.api_core.exceptions import GoogleAPICallError, RetryError

from quotestream.beam.messages import RawMessage, Receipt
from quotestream.beam.parse import NAMESPACE
from quotestream.beam.ticks import Ticks

# A google.cloud.pubsub_v1.SubscriberClient, or anything answering its pull and acknowledge.
SubscriberFactory = Callable[[], Any]
# Pub/Sub's limit is 512 KB per request; ack ids are about 200 bytes.
_ACK_CHUNK = 1000

log = logging.getLogger(__name__)


class PullMessagesFn(beam.DoFn):
    """tick -> what the subscription has right now, at most `max_messages`, unacknowledged."""

    def __init__(
        self, subscription: str, subscriber_factory: SubscriberFactory, max_messages: int
    ) -> None:
        self._subscription = subscription
        self._factory = subscriber_factory
        self._max_messages = max_messages
        self.pulled = Metrics.counter(NAMESPACE, "pulled")
        self.redelivered = Metrics.counter(NAMESPACE, "redelivered")

    def setup(self) -> None:
        self._subscriber = self._factory()
        self._failed_pulls = 0
        self._next_failure_log = 0.0

    def process(self, _tick: Any) -> Iterator[RawMessage]:
        # A tick takes what is there and returns: the next tick polls again.
        try:
            response = self._subscriber.pull(
                request={
                    "subscription": self._subscription,
                    "max_messages": self._max_messages,
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
            return
        if self._failed_pulls:
            log.warning("Pub/Sub back after %d failed pulls", self._failed_pulls)
            self._failed_pulls = 0
        received = list(response.received_messages)
        # delivery_attempt is 0 when the subscription has no dead-letter policy: unknown,
        # so treated as a possible redelivery.
        again = sum(1 for item in received if item.delivery_attempt != 1)
        self.pulled.inc(len(received))
        if again:
            self.redelivered.inc(again)
            log.info("pulled %d messages, %d of them redelivered", len(received), again)
        for item in received:
            message = item.message
            yield RawMessage(
                bytes(message.data),
                dict(message.attributes),
                message.message_id,
                Receipt(item.ack_id, redelivered=item.delivery_attempt != 1),
            )

    def teardown(self) -> None:
        subscriber = getattr(self, "_subscriber", None)
        if subscriber is not None:
            subscriber.close()


class PullFromPubSub(beam.PTransform[Any, Any]):
    """PBegin -> RawMessage with its receipt, polled every `interval_s`. Pair it with
    AcknowledgeMessages on what the load stored, or every message comes again."""

    def __init__(
        self,
        subscription: str,
        subscriber_factory: SubscriberFactory,
        interval_s: float = 0.2,
        max_messages: int = 500,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._pull = PullMessagesFn(subscription, subscriber_factory, max_messages)

    def expand(self, begin: PBegin) -> PCollection[Any]:
        return (
            begin
            | "Ticks" >> Ticks(self._interval_s, paced=True)
            | "Pull" >> beam.ParDo(self._pull)
        )


class AcknowledgeFn(beam.DoFn):
    """Acknowledges a bundle's receipts together when the bundle finishes."""

    def __init__(self, subscription: str, subscriber_factory: SubscriberFactory) -> None:
        self._subscription = subscription
        self._factory = subscriber_factory
        self.acknowledged = Metrics.counter(NAMESPACE, "acknowledged")
        self.unacknowledged = Metrics.counter(NAMESPACE, "unacknowledged")

    def setup(self) -> None:
        self._subscriber = self._factory()

    def start_bundle(self) -> None:
        self._ack_ids: list[str] = []

    def process(self, receipt: Receipt) -> None:
        self._ack_ids.append(receipt.ack_id)

    def finish_bundle(self) -> None:
        # An acknowledgement that does not arrive (an ack id past its deadline, Pub/Sub away)
        # costs a redelivery, never data: the message comes again and its row is found stored.
        for start in range(0, len(self._ack_ids), _ACK_CHUNK):
            chunk = self._ack_ids[start : start + _ACK_CHUNK]
            try:
                self._subscriber.acknowledge(
                    request={"subscription": self._subscription, "ack_ids": chunk}, timeout=30
                )
            except (GoogleAPICallError, RetryError) as error:
                self.unacknowledged.inc(len(chunk))
                log.warning(
                    "could not acknowledge %d messages (they come again, found stored): %s",
                    len(chunk),
                    error,
                )
                continue
            self.acknowledged.inc(len(chunk))
        self._ack_ids = []

    def teardown(self) -> None:
        subscriber = getattr(self, "_subscriber", None)
        if subscriber is not None:
            subscriber.close()


class AcknowledgeMessages(beam.PTransform[Any, Any]):
    """Receipts of stored messages -> acknowledged on their subscription."""

    def __init__(self, subscription: str, subscriber_factory: SubscriberFactory) -> None:
        super().__init__()
        self._acknowledge = AcknowledgeFn(subscription, subscriber_factory)

    def expand(self, receipts: PCollection[Any]) -> PCollection[Any]:
        return receipts | "Acknowledge" >> beam.ParDo(self._acknowledge)
