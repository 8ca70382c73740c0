"""Pub/Sub through the official client: the same code talks to Google and to the emulator
(the client switches to the emulator by itself when PUBSUB_EMULATOR_HOST is set)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from google.cloud import pubsub_v1

from quotestream.ports import PublishFuture


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
        self._client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(
                max_messages=max_messages, max_bytes=4 * 1024 * 1024, max_latency=max_latency_s
            ),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=ordered),
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
            self._client.api.get_topic(request={"topic": self.topic_path(topic)}, timeout=timeout)
        except GoogleAPICallError as error:
            raise ConnectionError(f"Pub/Sub topic {topic} unreachable: {error.message}") from error

    def close(self) -> None:
        self._client.stop()
