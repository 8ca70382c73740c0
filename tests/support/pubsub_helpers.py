"""Pub/Sub plumbing for integration tests: a topic with a subscription, and a drain."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1

PROJECT = "quotestream-test"


@dataclass(frozen=True)
class Received:
    data: bytes
    attributes: dict[str, str]
    message_id: str


def make_topic_with_subscription(prefix: str) -> tuple[str, str]:
    """A fresh topic and a subscription on it; returns their short names."""
    suffix = uuid.uuid4().hex[:8]
    topic, subscription = f"{prefix}-{suffix}", f"{prefix}-{suffix}-sub"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(PROJECT, topic)
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(
        name=subscriber.subscription_path(PROJECT, subscription), topic=topic_path
    )
    subscriber.close()
    return topic, subscription


def drain(
    subscription: str, expected: int, quiet_seconds: float = 3.0, timeout: float = 60.0
) -> list[Received]:
    """Pull and ack until `expected` messages arrived and then nothing more for `quiet_seconds`
    (so extra, duplicated messages would be seen too), or until `timeout`."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(PROJECT, subscription)
    received: list[Received] = []
    deadline = time.monotonic() + timeout
    last_message = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if len(received) >= expected and time.monotonic() - last_message > quiet_seconds:
                break
            try:
                response = subscriber.pull(
                    request={"subscription": path, "max_messages": 1000}, timeout=5
                )
            except DeadlineExceeded:
                continue
            if not response.received_messages:
                time.sleep(0.1)
                continue
            last_message = time.monotonic()
            for item in response.received_messages:
                received.append(
                    Received(
                        item.message.data, dict(item.message.attributes), item.message.message_id
                    )
                )
            subscriber.acknowledge(
                request={
                    "subscription": path,
                    "ack_ids": [item.ack_id for item in response.received_messages],
                }
            )
    finally:
        subscriber.close()
    return received
