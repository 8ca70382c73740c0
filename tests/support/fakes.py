"""In-memory fakes of the ports, for unit tests of the core and the API."""

from __future__ import annotations

import math
import statistics
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from quotestream.domain.ledger import Bar, LoadedQuote
from quotestream.domain.quote import to_ms
from quotestream.domain.rows import dead_letter_row_id
from quotestream.domain.schemas import (
    DEAD_LETTER_REPLAYS,
    QUOTE_BARS_1M,
    QUOTES,
    QUOTES_DEAD_LETTER,
    TableSpec,
)
from quotestream.ports import queries as shapes
from quotestream.ports.queries import TickGapRule


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

    def load_rows(self, table: str, spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> None:
        self.insert_rows(table, [dict(row) for row in rows])

    def create_scratch_table(self, table: str, spec: TableSpec) -> None:
        with self._lock:
            self.tables[table] = {}

    def drop_table(self, table: str) -> None:
        with self._lock:
            self.tables.pop(table, None)

    def close(self) -> None:
        pass


DAY_MS = 86_400_000


def ms_of(timestamp: str) -> int:
    """A stored timestamp (RFC 3339, as rows are written) in epoch milliseconds."""
    return to_ms(datetime.fromisoformat(timestamp))


def _within(timestamp: str | None, start_ms: int, end_ms: int | None = None) -> bool:
    """Whether the timestamp lies in [start_ms, end_ms); false for a NULL, as in SQL."""
    if timestamp is None:
        return False
    moment = ms_of(timestamp)
    return start_ms <= moment and (end_ms is None or moment < end_ms)


@dataclass
class _InMemoryQueries:
    """A query port answered in plain Python from the rows `warehouse` holds, as the SQL of
    its BigQuery twin (adapters/gcp/bigquery_queries.py) answers it: a NULL matches no
    comparison."""

    warehouse: InMemoryWarehouse

    def _quotes(self) -> list[dict[str, Any]]:
        return self.warehouse.rows(QUOTES.name)

    def _dead_letters(self) -> list[dict[str, Any]]:
        return self.warehouse.rows(QUOTES_DEAD_LETTER.name)

    def _quotes_of(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The quote rows of the interval's event time."""
        return [row for row in self._quotes() if _within(row["event_ts"], to_ms(start), to_ms(end))]

    def _received(self, start_ms: int, end_ms: int | None = None) -> int:
        """The dead letters received in [start_ms, end_ms)."""
        return sum(
            1 for row in self._dead_letters() if _within(row["received_ts"], start_ms, end_ms)
        )

    def _bar_panes(self, since_ms: int) -> list[shapes.BarPane]:
        return [
            shapes.BarPane(
                Bar(
                    row["pair"],
                    ms_of(row["window_start"]),
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                    row["tick_count"],
                ),
                row.get("pane_index") or 0,
            )
            for row in self.warehouse.rows(QUOTE_BARS_1M.name)
            if _within(row["window_end"], since_ms)
        ]

    def close(self) -> None:
        pass


@dataclass
class _InMemoryServedElsewhere(_InMemoryQueries):
    """The question QualityQueries and BackfillWrites share: the spans another source served."""

    def _distinct_ticks(self, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
        """pair -> its rows of the interval, each event id once (the first written, as the
        SQL keeps), in event-time then event-id order."""
        first: dict[str, dict[str, Any]] = {}
        for row in sorted(
            self._quotes_of(start, end),
            key=lambda row: (row.get("ingest_ts") or "", Decimal(row["bid"]), Decimal(row["ask"])),
        ):
            first.setdefault(row["event_id"], row)
        by_pair: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in sorted(
            first.values(), key=lambda row: (ms_of(row["event_ts"]), row["event_id"])
        ):
            by_pair[row["pair"]].append(row)
        return by_pair

    def served_elsewhere(
        self, start: datetime, end: datetime, source: str
    ) -> dict[str, list[shapes.ServedSpan]]:
        spans: dict[str, list[shapes.ServedSpan]] = {}
        for pair, rows in self._distinct_ticks(start, end).items():
            after, run = None, 0
            for row in rows:
                if row["source"] != source:
                    run += 1
                    continue
                if run:
                    spans.setdefault(pair, []).append(
                        shapes.ServedSpan(after, ms_of(row["event_ts"]), run)
                    )
                after, run = ms_of(row["event_ts"]), 0
            if run:
                spans.setdefault(pair, []).append(shapes.ServedSpan(after, None, run))
        return spans


@dataclass
class InMemoryQualityQueries(_InMemoryServedElsewhere):
    """QualityQueries (and so BarQueries)."""

    def distinct_quotes_per_pair(self, start: datetime, end: datetime) -> dict[str, int]:
        event_ids: defaultdict[str, set[str]] = defaultdict(set)
        for row in self._quotes_of(start, end):
            event_ids[row["pair"]].add(row["event_id"])
        return {pair: len(ids) for pair, ids in event_ids.items()}

    def crossed_quotes(self, start: datetime, end: datetime) -> int:
        return sum(
            1
            for row in self._quotes_of(start, end)
            if None not in (row["bid"], row["ask"]) and Decimal(row["bid"]) > Decimal(row["ask"])
        )

    def duplicate_quote_rows(self, start: datetime, end: datetime) -> int:
        rows = self._quotes_of(start, end)
        return len(rows) - len({row["event_id"] for row in rows})

    def quotes_with_nulls(self, start: datetime, end: datetime) -> int:
        required = ("bid", "ask", "mid", "spread", "ingest_ts")
        return sum(
            1 for row in self._quotes_of(start, end) if any(row.get(c) is None for c in required)
        )

    def quotes_ingested(self, start: datetime, end: datetime) -> int:
        interval = (to_ms(start), to_ms(end))
        return sum(1 for row in self._quotes() if _within(row.get("ingest_ts"), *interval))

    def dead_letters_received(self, start: datetime, end: datetime) -> int:
        return self._received(to_ms(start), to_ms(end))

    def newest_event_ms(self) -> int | None:
        return max((ms_of(row["event_ts"]) for row in self._quotes()), default=None)

    def minute_summaries(self, start: datetime, end: datetime) -> list[shapes.MinuteSummary]:
        minutes: defaultdict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for pair, rows in self._distinct_ticks(start, end).items():
            for row in rows:
                minutes[pair, ms_of(row["event_ts"]) // 60_000 * 60_000].append(row)
        summaries = []
        for (pair, minute_ms), rows in minutes.items():
            mids = [float(row["mid"]) for row in rows]
            bar = Bar(pair, minute_ms, mids[0], max(mids), min(mids), mids[-1], len(mids))
            summaries.append(shapes.MinuteSummary(bar, float(rows[-1]["spread"])))
        return summaries

    def final_bars(self, start: datetime, end: datetime) -> list[Bar]:
        final: dict[tuple[str, int], shapes.BarPane] = {}
        for pane in self._bar_panes(to_ms(start)):
            key = (pane.bar.pair, pane.bar.window_start_ms)
            rank = (pane.pane_index, pane.bar.tick_count)
            if pane.bar.window_start_ms < to_ms(end) and (
                key not in final or rank > (final[key].pane_index, final[key].bar.tick_count)
            ):
                final[key] = pane
        return [pane.bar for pane in final.values()]

    def mid_moves(self, start: datetime, end: datetime) -> list[shapes.MidMoves]:
        summaries = []
        for pair, rows in self._distinct_ticks(start, end).items():
            if len(rows) < 2:
                continue
            mids = [float(row["mid"]) for row in rows]
            moves = [math.log(later / earlier) for earlier, later in pairwise(mids)]
            median = statistics.median(moves)
            deviations = [abs(move - median) for move in moves]
            largest = max(range(len(moves)), key=lambda index: deviations[index])
            summaries.append(
                shapes.MidMoves(
                    pair,
                    len(moves),
                    median,
                    statistics.median(deviations),
                    deviations[largest],
                    ms_of(rows[largest + 1]["event_ts"]),
                    min(mids),
                )
            )
        return summaries

    def pair_ticks(
        self, start: datetime, end: datetime, gaps: TickGapRule
    ) -> dict[str, shapes.PairTicks]:
        per_pair = {}
        for pair, rows in self._distinct_ticks(start, end).items():
            times = [ms_of(row["event_ts"]) for row in rows]
            spans = [(later - earlier, later) for earlier, later in pairwise(times)]
            # A gap is the feed's when another source's tick is at either end of it.
            by_feed = [
                gaps.source != a["source"] or gaps.source != b["source"] for a, b in pairwise(rows)
            ]
            scheduled = [gap for (gap, _), feed in zip(spans, by_feed, strict=True) if not feed]
            feed_gaps = [gap for (gap, _), feed in zip(spans, by_feed, strict=True) if feed]
            interval = gaps.tick_intervals_ms.get(pair)
            too_long = [
                gap for gap in scheduled if interval and gap > gaps.max_intervals * interval
            ]
            longest = max(spans, default=(0, None))
            per_pair[pair] = shapes.PairTicks(
                pair,
                len(times),
                times[-1],
                len(too_long),
                # ROUND in SQL takes halves away from zero, Python's round to even.
                sum(math.floor(gap / interval + 0.5) - 1 for gap in too_long if interval),
                longest[0],
                longest[1],
                sum(1 for gap in feed_gaps if gap > gaps.max_feed_gap_ms),
            )
        return per_pair


@dataclass
class InMemoryAccountingQueries(_InMemoryQueries):
    def progress_since(self, since_ms: int) -> shapes.Progress:
        loaded = self.loaded_quotes_since(since_ms)
        newest = max((quote.event_ms for quote in loaded), default=None)
        return shapes.Progress(len(loaded), self._received(since_ms), newest)

    def loaded_quotes_since(self, since_ms: int) -> list[LoadedQuote]:
        return [
            LoadedQuote(
                row["event_id"],
                row["pair"],
                ms_of(row["event_ts"]),
                ms_of(row["ingest_ts"]),
            )
            for row in self._quotes()
            if _within(row.get("ingest_ts"), since_ms)
        ]

    def bar_panes_since(self, since_ms: int) -> list[shapes.BarPane]:
        return self._bar_panes(since_ms)

    def dead_letter_reasons_since(self, since_ms: int) -> dict[str, str]:
        return {
            row["message_id"]: row["reason"]
            for row in self._dead_letters()
            if row.get("message_id") is not None and _within(row["received_ts"], since_ms)
        }


@dataclass
class InMemoryReplayQueries(_InMemoryQueries):
    def dead_letters_between(
        self, start: datetime, end: datetime, reasons: Collection[str]
    ) -> list[shapes.KeptDeadLetter]:
        return [
            shapes.KeptDeadLetter(
                dead_letter_row_id(row),
                row["payload"],
                row["payload_encoding"],
                {item["key"]: item["value"] for item in row["attributes"]},
                row["reason"],
                row["stage"],
            )
            for row in self._dead_letters()
            if _within(row["received_ts"], to_ms(start), to_ms(end))
            and (not reasons or row["reason"] in reasons)
        ]

    def replay_verdicts(self, dead_letter_ids: Collection[str]) -> dict[str, shapes.ReplayVerdict]:
        newest: dict[str, dict[str, Any]] = {}
        for row in sorted(
            self.warehouse.rows(DEAD_LETTER_REPLAYS.name),
            key=lambda row: (ms_of(row["replayed_ts"]), row["outcome"]),
            reverse=True,
        ):
            if row["dead_letter_id"] in dead_letter_ids:
                newest.setdefault(row["dead_letter_id"], row)
        return {
            key: shapes.ReplayVerdict(row["outcome"], row["reason"]) for key, row in newest.items()
        }


@dataclass
class InMemoryHealthQueries(_InMemoryQueries):
    def recent_flow(self, since_ms: int, events_since_ms: int) -> shapes.RecentFlow:
        recent = [row for row in self._quotes() if _within(row["event_ts"], events_since_ms)]
        return shapes.RecentFlow(
            max((ms_of(row["event_ts"]) for row in recent), default=None),
            sum(1 for row in recent if _within(row.get("ingest_ts"), since_ms)),
            self._received(since_ms),
        )


@dataclass
class InMemoryResumePoints(_InMemoryQueries):
    """`reads` keeps the `since_ms` of each read; with `failing`, a read fails as an
    unreachable BigQuery would."""

    reads: list[int] = field(default_factory=list)
    failing: bool = False

    def newest_event_per_pair(self, since_ms: int, source: str) -> dict[str, int]:
        self.reads.append(since_ms)
        if self.failing:
            raise ConnectionError("BigQuery does not answer")
        newest: dict[str, int] = {}
        for row in self._quotes():
            if row.get("source") == source and _within(row["event_ts"], since_ms):
                newest[row["pair"]] = max(newest.get(row["pair"], 0), ms_of(row["event_ts"]))
        return newest


@dataclass
class InMemoryStoredRowLookups(_InMemoryQueries):
    """`lookups` keeps the ids each lookup asked for, `bar_lookups` the (pair, start, end) of
    each span of stored bars asked for; `failing_bar_lookups` of those fail first, as a
    BigQuery away would."""

    lookups: list[list[str]] = field(default_factory=list)
    bar_lookups: list[tuple[str, int, int]] = field(default_factory=list)
    bar_pane_lookups: list[list[shapes.BarPaneKey]] = field(default_factory=list)
    failing_bar_lookups: int = 0

    def stored_quote_ids(self, event_times: Mapping[str, datetime]) -> set[str]:
        self.lookups.append(list(event_times))
        # Found only between the earliest and the latest time asked on its day, as the SQL
        # reads only those partitions (a chunk of ids at a time there: for ids of real
        # quotes, the same).
        asked_per_day: dict[int, tuple[int, int]] = {}
        for moment in event_times.values():
            ms = to_ms(moment)
            earliest, latest = asked_per_day.get(ms // DAY_MS, (ms, ms))
            asked_per_day[ms // DAY_MS] = (min(earliest, ms), max(latest, ms))

        def read(timestamp: str) -> bool:
            ms = ms_of(timestamp)
            asked = asked_per_day.get(ms // DAY_MS)
            return asked is not None and asked[0] <= ms <= asked[1]

        return {
            row["event_id"]
            for row in self._quotes()
            if row["event_id"] in event_times and read(row["event_ts"])
        }

    def stored_dead_letter_ids(self, row_ids: Collection[str]) -> set[str]:
        self.lookups.append(list(row_ids))
        # Only rows with a message id have the SQL's row id; the others' is NULL.
        stored = {dead_letter_row_id(row) for row in self._dead_letters() if row.get("message_id")}
        return stored & set(row_ids)

    def stored_bar_panes(self, panes: Collection[shapes.BarPaneKey]) -> set[shapes.BarPaneKey]:
        self.bar_pane_lookups.append(sorted(panes))
        stored = {
            (row["pair"], ms_of(row["window_start"]), row["pane_index"])
            for row in self.warehouse.rows(QUOTE_BARS_1M.name)
        }
        return stored & set(panes)

    def stored_bars(self, pair: str, start_ms: int, end_ms: int) -> dict[int, shapes.StoredBar]:
        self.bar_lookups.append((pair, start_ms, end_ms))
        if self.failing_bar_lookups > 0:
            self.failing_bar_lookups -= 1
            raise ConnectionError("BigQuery does not answer")
        ticks: dict[int, dict[str, tuple[int, Decimal]]] = defaultdict(dict)
        # Each event id's first written row, as the SQL keeps.
        for row in sorted(
            self._quotes(),
            key=lambda row: (row.get("ingest_ts") or "", Decimal(row["bid"]), Decimal(row["ask"])),
        ):
            if row["pair"] == pair and _within(row["event_ts"], start_ms, end_ms):
                event_ms = ms_of(row["event_ts"])
                ticks[event_ms - event_ms % 60_000].setdefault(
                    row["event_id"], (event_ms, Decimal(row["mid"]))
                )
        finals: dict[int, tuple[int, int]] = {}
        for row in self.warehouse.rows(QUOTE_BARS_1M.name):
            start = ms_of(row["window_start"])
            if row["pair"] == pair and start_ms <= start < end_ms:
                pane = (row.get("pane_index") or 0, row["tick_count"])
                finals[start] = max(finals.get(start, pane), pane)
        return {
            minute: shapes.StoredBar(dict(ticks.get(minute, {})), *finals.get(minute, (-1, 0)))
            for minute in sorted(ticks.keys() | finals.keys())
        }


@dataclass
class InMemoryBackfillWrites(_InMemoryServedElsewhere):
    def insert_missing_quotes(self, scratch_table: str, start: datetime, end: datetime) -> int:
        present = {row["event_id"] for row in self._quotes_of(start, end)}
        interval = (to_ms(start), to_ms(end))
        missing = [
            row
            for row in self.warehouse.rows(scratch_table)
            if _within(row["event_ts"], *interval) and row["event_id"] not in present
        ]
        self.warehouse.insert_rows(QUOTES.name, missing)
        return len(missing)


@dataclass
class InMemoryQuoteSource:
    """The API's history, served from quotes in their wire form."""

    quotes: list[dict[str, str]] = field(default_factory=list)

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        for quote in self.quotes:
            if quote["pair"] == pair and _within(quote["event_ts"], start_ms, end_ms):
                yield quote

    def close(self) -> None:
        pass


# Beam pickles DoFns; they find their fakes again by name through these registries.
_WAREHOUSES: dict[str, InMemoryWarehouse] = {}
_LOOKUPS: dict[str, InMemoryStoredRowLookups] = {}
_RESUME_POINTS: dict[str, InMemoryResumePoints] = {}
_PUBLISHERS: dict[str, InMemoryPublisher] = {}


def shared_warehouse(name: str) -> InMemoryWarehouse:
    return _WAREHOUSES.setdefault(name, InMemoryWarehouse())


def shared_lookups(name: str) -> InMemoryStoredRowLookups:
    """The lookups over `shared_warehouse(name)`."""
    return _LOOKUPS.setdefault(name, InMemoryStoredRowLookups(shared_warehouse(name)))


def shared_resume_points(name: str) -> InMemoryResumePoints:
    """The resume points over `shared_warehouse(name)`."""
    return _RESUME_POINTS.setdefault(name, InMemoryResumePoints(shared_warehouse(name)))


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

    def replace(self, name: str, pipeline: str, update: Any) -> Any:
        return self.launch(name, pipeline, update.args) if self.in_place else None

    def stop(self, name: str, mode: Any) -> None:
        from dataclasses import replace

        from quotestream.ports.jobs import JobState

        self.stops.append((name, str(mode)))
        self.jobs[name] = replace(self.jobs[name], state=JobState.CANCELLED)
