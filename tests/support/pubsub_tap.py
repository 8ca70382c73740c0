"""A subscription of a test's own on a topic, to see what a job published."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1

from quotestream.domain import Quote, parse_quote
from quotestream.domain.quote import now_ms


class Tap:
    """A subscription of its own on the quotes topic: what extraction published, each
    quote with the moment it arrived here."""

    def __init__(self, project: str, topic: str) -> None:
        self._subscriber = pubsub_v1.SubscriberClient()
        self._path = self._subscriber.subscription_path(project, f"tap-{uuid.uuid4().hex[:6]}")
        self._subscriber.create_subscription(
            name=self._path, topic=self._subscriber.topic_path(project, topic)
        )
        self.seen: list[tuple[Quote, int]] = []

    def pull_until(self, done: Callable[[], bool], timeout: float, quiet_s: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while not (done() and time.monotonic() - last >= quiet_s):
            assert time.monotonic() < deadline, f"timed out with {len(self.seen)} quotes"
            try:
                response = self._subscriber.pull(
                    request={"subscription": self._path, "max_messages": 500}, timeout=2
                )
            except DeadlineExceeded:
                continue
            if not response.received_messages:
                time.sleep(0.1)
                continue
            last, arrived = time.monotonic(), now_ms()
            for item in response.received_messages:
                message = item.message
                self.seen.append((parse_quote(message.data, dict(message.attributes)), arrived))
            self._subscriber.acknowledge(
                request={
                    "subscription": self._path,
                    "ack_ids": [item.ack_id for item in response.received_messages],
                }
            )

    def reached(self, moment_ms: int, pairs: Sequence[str]) -> Callable[[], bool]:
        """Every pair has a quote at or after `moment_ms`."""
        return lambda: all(
            any(q.pair == pair and q.event_ts_ms >= moment_ms for q, _ in self.seen)
            for pair in pairs
        )

    def close(self) -> None:
        self._subscriber.delete_subscription(subscription=self._path)
        self._subscriber.close()
