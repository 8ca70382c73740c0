"""Pub/Sub through the official client: the same code talks to Google and to the emulator
(the client switches to the emulator by itself when PUBSUB_EMULATOR_HOST is set)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, GoogleAPIError, NotFound
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient, types

from quotestream.ports import PublishFuture
from quotestream.ports.resources import (
    IncompatibleChange,
    Outcome,
    ResourceResult,
    SubscriptionSpec,
)


class PubSubPublisher:
    """One long-lived batched publisher client, shared by every caller in the process."""

    def __init__(
        self,
        project: str,
        *,
        credentials: Any = None,
        max_messages: int = 500,
        max_latency_s: float = 0.05,
        ordered: bool = False,
    ) -> None:
        self._project = project
        self._client = PublisherClient(
            batch_settings=types.BatchSettings(
                max_messages=max_messages, max_bytes=4 * 1024 * 1024, max_latency=max_latency_s
            ),
            publisher_options=types.PublisherOptions(enable_message_ordering=ordered),
            credentials=credentials,
        )

    def topic_path(self, topic: str) -> str:
        return (
            topic
            if topic.startswith("projects/")
            else self._client.topic_path(self._project, topic)
        )

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> PublishFuture:
        path = self.topic_path(topic)
        future: PublishFuture = self._client.publish(
            path, data, ordering_key=ordering_key, **attributes
        )
        if ordering_key:
            # An ordered key stays paused after a failure until it is resumed explicitly.
            def resume_on_failure(finished: Any) -> None:
                if finished.exception() is not None:
                    self._client.resume_publish(path, ordering_key)

            future.add_done_callback(resume_on_failure)
        return future

    def ping(self, topic: str, timeout: float) -> None:
        try:
            # No retry: a probe must answer within its timeout, not after minutes of backoff.
            self._client.api.get_topic(
                request={"topic": self.topic_path(topic)}, timeout=timeout, retry=None
            )
        except GoogleAPIError as error:
            raise ConnectionError(f"Pub/Sub topic {topic} unreachable: {error}") from error

    def close(self) -> None:
        self._client.stop()


class PubSubAdmin:
    """Idempotent topics and subscriptions: create what is missing, update what may change in
    place, and refuse (naming the field) what would need a delete and a re-create."""

    def __init__(self, project: str, *, credentials: Any = None) -> None:
        self._project = project
        self._publisher = PublisherClient(credentials=credentials)
        self._subscriber = SubscriberClient(credentials=credentials)

    def topic_path(self, topic: str) -> str:
        return str(self._publisher.topic_path(self._project, topic))

    def subscription_path(self, subscription: str) -> str:
        return str(self._subscriber.subscription_path(self._project, subscription))

    def ensure_topic(self, topic: str) -> ResourceResult:
        # Looked up first: Pub/Sub checks the project-wide pubsub.topics.create before it
        # answers "already exists", and the DAGs' account holds roles on the topic only.
        try:
            self._publisher.get_topic(topic=self.topic_path(topic))
        except NotFound:
            pass
        else:
            return ResourceResult("pubsub topic", topic, Outcome.EXISTS)
        try:
            self._publisher.create_topic(name=self.topic_path(topic))
        except AlreadyExists:
            return ResourceResult("pubsub topic", topic, Outcome.EXISTS)
        return ResourceResult("pubsub topic", topic, Outcome.CREATED)

    def ensure_subscription(self, spec: SubscriptionSpec) -> ResourceResult:
        wanted = self._subscription(spec)
        try:
            live = self._subscriber.get_subscription(subscription=wanted.name)
        except NotFound:
            self._subscriber.create_subscription(request=wanted)
            return ResourceResult("pubsub subscription", spec.name, Outcome.CREATED)
        for field in ("topic", "enable_message_ordering"):
            if getattr(live, field) != getattr(wanted, field):
                raise IncompatibleChange(
                    f"subscription {spec.name}: {field} is {getattr(live, field)!r}, wanted "
                    f"{getattr(wanted, field)!r}; it cannot change in place: delete the "
                    "subscription (unacked messages are lost) and provision again"
                )
        changed = [
            field
            for field in (
                "ack_deadline_seconds",
                "message_retention_duration",
                "dead_letter_policy",
            )
            if getattr(live, field) != getattr(wanted, field)
        ]
        if not changed:
            return ResourceResult("pubsub subscription", spec.name, Outcome.EXISTS)
        self._subscriber.update_subscription(
            request={"subscription": wanted, "update_mask": {"paths": changed}}
        )
        return ResourceResult("pubsub subscription", spec.name, Outcome.UPDATED, ", ".join(changed))

    def delete_subscription(self, subscription: str) -> bool:
        try:
            self._subscriber.delete_subscription(subscription=self.subscription_path(subscription))
        except NotFound:
            return False
        return True

    def delete_topic(self, topic: str) -> bool:
        try:
            self._publisher.delete_topic(topic=self.topic_path(topic))
        except NotFound:
            return False
        return True

    def close(self) -> None:
        self._subscriber.close()
        self._publisher.stop()

    def _subscription(self, spec: SubscriptionSpec) -> types.Subscription:
        dead_letter = None
        if spec.dead_letter_topic:
            dead_letter = types.DeadLetterPolicy(
                dead_letter_topic=self.topic_path(spec.dead_letter_topic),
                max_delivery_attempts=spec.max_delivery_attempts,
            )
        return types.Subscription(
            name=self.subscription_path(spec.name),
            topic=self.topic_path(spec.topic),
            ack_deadline_seconds=spec.ack_deadline_s,
            message_retention_duration=timedelta(seconds=spec.retention_s),
            enable_message_ordering=spec.ordered,
            dead_letter_policy=dead_letter,
            # Never expire for inactivity: the load job may be stopped for days.
            expiration_policy=types.ExpirationPolicy(ttl=None),
        )
