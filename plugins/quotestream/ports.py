"""The ports of the hexagon. Adapters implement them structurally; fakes need not inherit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class PublishFuture(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...

    def add_done_callback(self, callback: Callable[[Any], None]) -> None: ...

    def exception(self, timeout: float | None = None) -> BaseException | None: ...


class Publisher(Protocol):
    """Publishes messages to a topic, batching as it sees fit."""

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> PublishFuture: ...

    def ping(self, topic: str, timeout: float) -> None:
        """Raise if the topic cannot be published to right now."""

    def close(self) -> None:
        """Flush every pending batch, then release the client."""
