"""In-memory fakes of the ports, for unit tests of the core and the API."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublishedMessage:
    topic: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


@dataclass
class InMemoryPublisher:
    """Completes publishes at once. `fail_next` makes that many publishes fail first."""

    messages: list[PublishedMessage] = field(default_factory=list)
    fail_next: int = 0
    closed: bool = False
    reachable: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> Future[str]:
        future: Future[str] = Future()
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                future.set_exception(ConnectionError("injected publish failure"))
                return future
            self.messages.append(PublishedMessage(topic, data, dict(attributes), ordering_key))
            future.set_result(str(len(self.messages)))
        return future

    def ping(self, topic: str, timeout: float) -> None:
        if not self.reachable:
            raise ConnectionError(f"topic {topic} unreachable (fake)")

    def close(self) -> None:
        self.closed = True


@dataclass
class GatedPublisher(InMemoryPublisher):
    """Holds every publish until `release()`: lets a test fill the relay's buffer."""

    gate: threading.Event = field(default_factory=threading.Event)
    _held: list[Callable[[], Any]] = field(default_factory=list)

    def publish(
        self, topic: str, data: bytes, attributes: Mapping[str, str], ordering_key: str = ""
    ) -> Future[str]:
        future: Future[str] = Future()

        def complete() -> None:
            done = InMemoryPublisher.publish(self, topic, data, attributes, ordering_key)
            future.set_result(done.result())

        with self._lock:
            held = not self.gate.is_set()
            if held:
                self._held.append(complete)
        if not held:
            complete()
        return future

    def release(self) -> None:
        with self._lock:
            self.gate.set()
            held, self._held = self._held, []
        for complete in held:
            complete()
