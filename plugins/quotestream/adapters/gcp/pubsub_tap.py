"""A copy of every message published on a topic, through a subscription of its own.

The demo and `bench load` use it as the ledger of what entered the pipeline, so that what
the warehouse holds can be checked against it message by message.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from google.cloud.pubsub_v1 import SubscriberClient, types

from quotestream.domain.ledger import PublishedMessage
from quotestream.domain.quote import to_ms
from quotestream.domain.validation import InvalidQuote, parse_quote


class PubSubTopicTap:
    def __init__(self, project: str, topic: str, *, credentials: Any = None) -> None:
        self._client = SubscriberClient(credentials=credentials)
        self._topic = self._client.topic_path(project, topic)
        self._subscription = self._client.subscription_path(
            project, f"{topic}-tap-{uuid.uuid4().hex[:8]}"
        )
        self._lock = threading.Lock()
        self._messages: dict[str, PublishedMessage] = {}
        self._future: Any = None

    def open(self) -> None:
        """Create the subscription; only messages published from now on are seen."""
        self._client.create_subscription(
            request={"name": self._subscription, "topic": self._topic, "ack_deadline_seconds": 60}
        )
        self._future = self._client.subscribe(
            self._subscription,
            self._record,
            flow_control=types.FlowControl(max_messages=5_000),
        )

    def published(self) -> list[PublishedMessage]:
        with self._lock:
            return list(self._messages.values())

    def close(self) -> None:
        if self._future is not None:
            self._future.cancel()
            # A cancelled pull may end with an error of its own: it is over either way.
            with contextlib.suppress(Exception):
                self._future.result(timeout=10)
        self._client.delete_subscription(request={"subscription": self._subscription})
        self._client.close()

    def _record(self, message: Any) -> None:
        event_id, event_ms = _quote_identity(message.data, dict(message.attributes))
        published = PublishedMessage(
            message.message_id, event_id, event_ms, to_ms(message.publish_time)
        )
        with self._lock:
            self._messages[message.message_id] = published  # a redelivery is the same message
        message.ack()


def _quote_identity(data: bytes, attributes: Mapping[str, str]) -> tuple[str | None, int | None]:
    """(event_id, event time) of a valid quote; a message the gate refuses has neither."""
    try:
        quote = parse_quote(data, attributes)
    except InvalidQuote:
        return None, None
    return quote.event_id, quote.event_ts_ms
