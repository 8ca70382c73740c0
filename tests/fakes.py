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


@dataclass
class InMemoryWarehouse:
    """Tables as dicts keyed by row id (so a repeated insert id is stored once, as BigQuery's
    dedup does). `reject(table, row)` returning a message makes BigQuery refuse that row."""

    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    reject: Callable[[str, dict[str, Any]], str | None] | None = None
    lookups: list[list[str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def insert_rows(
        self, table: str, rows: list[dict[str, Any]], row_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        errors = []
        with self._lock:
            stored = self.tables.setdefault(table, {})
            for index, row in enumerate(rows):
                refusal = self.reject(table, row) if self.reject else None
                if refusal:
                    errors.append(
                        {"index": index, "errors": [{"reason": "invalid", "message": refusal}]}
                    )
                    continue
                key = row_ids[index] if row_ids else f"auto-{len(stored)}"
                stored.setdefault(key, dict(row))
        return errors

    def rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.tables.get(table, {}).values())

    def query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Answers the load's one query, the lookup of stored row ids (`@id_N` parameters)."""
        self.lookups.append([v for name, v in params.items() if name.startswith("id_")])
        if "quotes_dead_letter" in sql:
            stored = {f"{r['stage']}:{r['message_id']}" for r in self.rows("quotes_dead_letter")}
        else:
            stored = {r["event_id"] for r in self.rows("quotes")}
        return [{"row_id": row_id} for row_id in self.lookups[-1] if row_id in stored]

    def close(self) -> None:
        pass


# Beam pickles DoFns; they find their fakes again by name through these registries.
_WAREHOUSES: dict[str, InMemoryWarehouse] = {}
_PUBLISHERS: dict[str, InMemoryPublisher] = {}


def shared_warehouse(name: str) -> InMemoryWarehouse:
    return _WAREHOUSES.setdefault(name, InMemoryWarehouse())


def shared_publisher(name: str) -> InMemoryPublisher:
    return _PUBLISHERS.setdefault(name, InMemoryPublisher())


@dataclass
class InMemoryJobRunner:
    jobs: dict[str, Any] = field(default_factory=dict)
    launches: list[str] = field(default_factory=list)
    stops: list[tuple[str, str]] = field(default_factory=list)
    # Whether it replaces running jobs in place, as Dataflow does (the local runner cannot).
    in_place: bool = False

    def find(self, name: str) -> Any:
        return self.jobs.get(name)

    def launch(self, name: str, pipeline: str, args: Any) -> Any:
        from quotestream.ports.jobs import Job, JobState

        self.launches.append(name)
        self.jobs[name] = Job(name, f"{name}-{len(self.launches)}", JobState.RUNNING, 0)
        return self.jobs[name]

    def replace(self, name: str, pipeline: str, args: Any, renamed: Any, timeout_s: float) -> Any:
        return self.launch(name, pipeline, args) if self.in_place else None

    def stop(self, name: str, mode: Any) -> None:
        from dataclasses import replace

        from quotestream.ports.jobs import JobState

        self.stops.append((name, str(mode)))
        self.jobs[name] = replace(self.jobs[name], state=JobState.CANCELLED)
