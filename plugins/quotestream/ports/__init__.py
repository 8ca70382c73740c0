"""The ports of the hexagon as Protocols; adapters implement them structurally, fakes too."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from quotestream.domain.ledger import PublishedMessage
from quotestream.domain.schemas import TableSpec
from quotestream.ports.jobs import InPlaceUpdate, Job, StopMode
from quotestream.ports.resources import ResourceResult, SubscriptionSpec


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


class MessagingAdmin(Protocol):
    """Creates and updates topics and subscriptions idempotently."""

    def ensure_topic(self, topic: str) -> ResourceResult: ...

    def ensure_subscription(self, spec: SubscriptionSpec) -> ResourceResult: ...

    def delete_subscription(self, subscription: str) -> bool: ...

    def delete_topic(self, topic: str) -> bool: ...

    def close(self) -> None: ...


class Warehouse(Protocol):
    """The analytical store: tables from the domain's schemas and the rows written to them.
    What is asked of those rows goes through the query ports of ports/queries.py."""

    def ensure_dataset(self) -> ResourceResult: ...

    def ensure_table(self, spec: TableSpec) -> ResourceResult: ...

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], row_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]: ...

    def load_rows(self, table: str, spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def create_scratch_table(self, table: str, spec: TableSpec) -> None: ...

    def drop_table(self, table: str) -> None: ...

    def delete_dataset(self) -> bool: ...

    def close(self) -> None: ...


class QuoteSource(Protocol):
    """The market-data API as the pipelines see it: quotes in the gate's JSON form."""

    def latest(self, pairs: Sequence[str]) -> list[dict[str, str]]: ...

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]: ...

    def close(self) -> None: ...


class JobRunner(Protocol):
    """Launches and tracks pipeline jobs by a stable name (Dataflow, or local processes)."""

    def find(self, name: str) -> Job | None:
        """The newest job of that name, in whatever state; None if there never was one."""

    def launch(self, name: str, pipeline: str, args: Sequence[str]) -> Job:
        """Start `pipeline` (extract or load) under `name`; returns once it runs."""

    def stop(self, name: str, mode: StopMode) -> None: ...

    def replace(self, name: str, pipeline: str, update: InPlaceUpdate) -> Job | None:
        """Replace the running job in place, keeping its state, once the runner says the
        replacement took over (within the update's timeout); None when this runner cannot,
        and the caller stops and relaunches."""


class Notifier(Protocol):
    def notify(self, subject: str, body: str) -> None: ...


class ServiceDeployer(Protocol):
    """Deploys the API as create-or-update and tells where it answers."""

    def deploy(self) -> list[ResourceResult]:
        """The service, then whatever else the deploy brought to its declared state."""

    def url(self) -> str:
        """Where the deployed service answers; raises while its newest revision is not ready."""

    def headers(self) -> dict[str, str]:
        """What a caller must send (an identity token for a private Cloud Run service)."""


class BacklogProbe(Protocol):
    """How far a subscription is behind: undelivered messages and the oldest unacked age (s)."""

    def backlog(self, subscription: str) -> tuple[int | None, float | None]: ...


class TopicTap(Protocol):
    """A copy of every message published on a topic from `open()` on: the ledger a run's
    output is checked against."""

    def open(self) -> None: ...

    def published(self) -> list[PublishedMessage]: ...

    def close(self) -> None: ...
