"""The ports of the hexagon as Protocols; adapters implement them structurally, fakes too."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from quotestream.domain.ledger import Bar, LoadedQuote, PublishedMessage
from quotestream.domain.schemas import TableSpec
from quotestream.ports.jobs import Job, StopMode
from quotestream.ports.queries import (
    BarPane,
    KeptDeadLetter,
    MidMoves,
    MinuteSummary,
    PairTicks,
    Progress,
    RecentFlow,
    ReplayVerdict,
)
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
    What is asked of those rows goes through QuoteQueries."""

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


class QuoteQueries(Protocol):
    """Every question the services ask of the warehouse, each by name and answered with plain
    data, so a fake can answer them too; beside them the backfill's one set-based insert and
    the load's lookups of rows already stored. Intervals are [start, end); times in
    milliseconds are since the epoch."""

    def distinct_quotes_per_pair(self, start: datetime, end: datetime) -> dict[str, int]:
        """pair -> distinct event ids of the interval's event time; a pair without any is absent."""

    def crossed_quotes(self, start: datetime, end: datetime) -> int:
        """Quote rows of the interval's event time whose bid is above their ask."""

    def duplicate_quote_rows(self, start: datetime, end: datetime) -> int:
        """Quote rows of the interval's event time beyond the first of each event id."""

    def quotes_with_nulls(self, start: datetime, end: datetime) -> int:
        """Quote rows of the interval's event time lacking bid, ask, mid, spread or ingest_ts."""

    def quotes_ingested(self, start: datetime, end: datetime) -> int:
        """Quote rows written (ingest_ts) in the interval, whatever their event time."""

    def dead_letters_received(self, start: datetime, end: datetime) -> int:
        """Dead letters written (received_ts) in the interval."""

    def newest_event_ms(self) -> int | None:
        """The newest event time of all the quotes; None while there is none."""

    def minute_summaries(self, start: datetime, end: datetime) -> list[MinuteSummary]:
        """Every pair-minute of the interval's event time with quotes, recomputed from them."""

    def final_bars(self, start: datetime, end: datetime) -> list[Bar]:
        """The final pane (highest pane_index) of each stored bar whose window starts in the
        interval."""

    def mid_moves(self, start: datetime, end: datetime) -> list[MidMoves]:
        """Per pair with at least two ticks in the interval's event time, its mid moves."""

    def pair_ticks(
        self,
        start: datetime,
        end: datetime,
        tick_intervals_ms: Mapping[str, int],
        max_gap_intervals: float,
    ) -> dict[str, PairTicks]:
        """pair -> its ticks of the interval's event time, for every pair with any; a gap is
        longer than `max_gap_intervals` of the pair's interval in `tick_intervals_ms` (pairs
        not there have no gaps)."""

    def dead_letters_between(
        self, start: datetime, end: datetime, reasons: Collection[str]
    ) -> list[KeptDeadLetter]:
        """The dead letters received in the interval, of these reasons (all when empty)."""

    def replay_verdicts(self, dead_letter_ids: Collection[str]) -> dict[str, ReplayVerdict]:
        """dead-letter row id -> the newest replay verdict, for those of these ids replayed."""

    def progress_since(self, since_ms: int) -> Progress:
        """What was written from `since_ms` on (ingest_ts, received_ts)."""

    def loaded_quotes_since(self, since_ms: int) -> list[LoadedQuote]:
        """The quote rows written from `since_ms` on."""

    def bar_panes_since(self, since_ms: int) -> list[BarPane]:
        """Every stored pane of the bars whose window ended at or after `since_ms`."""

    def dead_letter_reasons_since(self, since_ms: int) -> dict[str, str]:
        """message id -> reason of the dead letters received from `since_ms` on that have a
        message id."""

    def recent_flow(self, since_ms: int, events_since_ms: int) -> RecentFlow:
        """The newest event time from `events_since_ms` on; the quote rows of those event times
        written, and the dead letters received, from `since_ms` on. `events_since_ms` bounds
        the partitions read."""

    def insert_missing_quotes(self, scratch_table: str, start: datetime, end: datetime) -> int:
        """Insert into `quotes` the rows of `scratch_table` of the interval's event time whose
        event id `quotes` lacks there; returns how many. Only inserts, which rows still in
        BigQuery's streaming buffer allow where a MERGE or DELETE would fail."""

    def stored_quote_ids(self, event_times: Mapping[str, datetime]) -> set[str]:
        """Which of these event ids (each with its event time) `quotes` holds; the times bound
        the partitions read."""

    def stored_dead_letter_ids(self, row_ids: Collection[str]) -> set[str]:
        """Which of these dead-letter row ids (domain.rows.dead_letter_row_id, of rows with a
        message id) `quotes_dead_letter` holds."""

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

    def replace(
        self,
        name: str,
        pipeline: str,
        args: Sequence[str],
        renamed: Mapping[str, str],
        timeout_s: float,
    ) -> Job | None:
        """Replace the running job in place, keeping its state (`renamed`: old transform
        names to new), once the runner says the replacement took over (within `timeout_s`);
        None when this runner cannot, and the caller stops and relaunches."""


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
