"""How the quote writer looks up quotes old enough that BigQuery's insert-id dedup may have
forgotten their first insert: by each batch's own event ids, so that what a lookup costs and
holds is bounded by the batch whatever its event times; inserts stay under BigQuery's request
limit."""

from __future__ import annotations

import json
import tracemalloc
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import apache_beam as beam
import pytest

from quotestream.beam.sinks import INSERT_ID_TRUSTED_MS, InsertRowsFn, WriteRows
from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import DEAD_LETTER_PAYLOAD_BYTES, dead_letter_row_id
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from tests.support.fakes import DAY_MS, InMemoryStoredRowLookups, InMemoryWarehouse
from tests.support.pipelines import direct_pipeline
from tests.support.rows import dead_letter_at, quote_at

pytestmark = pytest.mark.unit


@dataclass
class RecordingWarehouse(InMemoryWarehouse):
    """Keeps the size of each insert request's rows, as JSON."""

    request_bytes: list[int] = field(default_factory=list)

    def insert_rows(
        self, table: str, rows: list[dict[str, Any]], row_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        self.request_bytes.append(len(json.dumps(rows)))
        return super().insert_rows(table, rows, row_ids)


_RECORDING: dict[str, RecordingWarehouse] = {}


def recording(name: str) -> RecordingWarehouse:
    return _RECORDING.setdefault(name, RecordingWarehouse())


def writer(warehouse: Any, queries: Any) -> InsertRowsFn:
    fn = InsertRowsFn(QUOTES.name, lambda: warehouse, lambda row: row["event_id"], lambda: queries)
    fn.setup()
    return fn


def written(fn: InsertRowsFn, rows: list[dict[str, Any]]) -> list[Any]:
    return list(fn.process(rows))


def rows_from(start_ms: int, count: int, step_ms: int = 1_000) -> list[dict[str, Any]]:
    return [quote_at(start_ms + index * step_ms) for index in range(count)]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["event_id"] for row in rows]


def test_each_batch_asks_for_its_own_old_ids_once_and_copies_are_not_inserted() -> None:
    warehouse = RecordingWarehouse()
    queries = InMemoryStoredRowLookups(warehouse)
    backlog = rows_from(now_ms() - 3_600_000, 120)
    warehouse.insert_rows(QUOTES.name, backlog[:5], ids(backlog[:5]))
    fn = writer(warehouse, queries)

    batches = [backlog[offset : offset + 20] for offset in range(0, len(backlog), 20)]
    for batch in batches:
        assert len(written(fn, batch)) == len(batch)

    assert sorted(ids(warehouse.rows(QUOTES.name))) == sorted(ids(backlog))
    assert [sorted(asked) for asked in queries.lookups] == [sorted(ids(b)) for b in batches]
    # Copies of what is stored, from this writer or another, are found and not sent again.
    inserts = len(warehouse.request_bytes)
    assert len(written(fn, backlog[30:60])) == 30
    assert len(warehouse.request_bytes) == inserts
    assert len(warehouse.rows(QUOTES.name)) == len(backlog)


def test_young_rows_are_left_to_insert_id_dedup_and_not_looked_up() -> None:
    warehouse = InMemoryWarehouse()
    queries = InMemoryStoredRowLookups(warehouse)
    now = now_ms()
    old = [quote_at(now - 40 * DAY_MS), quote_at(now - INSERT_ID_TRUSTED_MS - 5_000)]
    young = quote_at(now - 1_000)
    fn = writer(warehouse, queries)

    written(fn, [*old, young])
    written(fn, [quote_at(now - 2_000)])

    assert [sorted(asked) for asked in queries.lookups] == [sorted(ids(old))]
    assert len(warehouse.rows(QUOTES.name)) == 4


@dataclass
class DenselyStoredQuotes:
    """`quotes` as if it held 10 quotes a second of every day (18,000 in each half hour): of
    the writer's rows, those with an even second of event time are among them. It answers
    only what the port asks, by ids; `answered` keeps how many ids each lookup returned."""

    answered: list[int] = field(default_factory=list)

    def stored_quote_ids(self, event_times: Mapping[str, datetime]) -> set[str]:
        stored = {
            event_id for event_id, moment in event_times.items() if to_ms(moment) // 1000 % 2 == 0
        }
        self.answered.append(len(stored))
        return stored

    def close(self) -> None:
        pass


@dataclass
class DiscardingWarehouse:
    """Takes every insert and keeps nothing: only the writer's own memory is measured."""

    inserted: int = 0

    def insert_rows(
        self, table: str, rows: list[dict[str, Any]], row_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        self.inserted += len(rows)
        return []

    def close(self) -> None:
        pass


def test_the_writer_holds_no_more_than_its_batch_however_many_ids_each_span_stores() -> None:
    """Old quotes spread over 30 days, a thousand a batch, each in a half hour of its own,
    against a table storing a quote every second of them: what the writer holds while it
    writes, and keeps afterwards, is of the order of its batch."""
    batch_size, batches = 1_000, 20
    now = now_ms()
    # Quotes 43 minutes apart, alternately on an even and an odd second: half stored.
    spread = [
        rows_from(now - 30 * DAY_MS + index * 1_001, batch_size, step_ms=43 * 60_000 + 1_000)
        for index in range(batches)
    ]
    queries, warehouse = DenselyStoredQuotes(), DiscardingWarehouse()
    fn = writer(warehouse, queries)

    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for batch in spread:
            assert len(written(fn, batch)) == batch_size
        held_after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(
        f"writer: peak {(peak - baseline) / 2**10:.0f} KiB over {batches} batches of "
        f"{batch_size}, {(held_after - baseline) / 2**10:.0f} KiB held after"
    )
    assert len(queries.answered) == batches
    assert all(answered <= batch_size for answered in queries.answered)
    assert warehouse.inserted + sum(queries.answered) == batch_size * batches
    # Lookups by span held each half hour's ids (1.75 MiB at 10 quotes/s) for 10 s: a batch
    # of these touched a thousand half hours.
    assert peak - baseline < 2 * 2**20
    assert held_after - baseline < 64 * 2**10


def test_inserts_stay_under_bigquerys_request_limit_and_take_a_bundles_quotes_at_once() -> None:
    name = f"weights-{uuid.uuid4()}"
    warehouse = recording(name)
    now = now_ms()
    quotes = [quote_at(now - 1_000 - index) for index in range(5_000)]
    # Payloads that JSON escapes to twice their size: weighed as they travel.
    heavy = [
        {**dead_letter_at(now, f"m{index}"), "payload": '"' * DEAD_LETTER_PAYLOAD_BYTES}
        for index in range(200)
    ]
    with direct_pipeline() as pipeline:
        for label, rows, table, row_id in (
            ("Quotes", quotes, QUOTES.name, lambda row: row["event_id"]),
            ("DeadLetters", heavy, QUOTES_DEAD_LETTER.name, dead_letter_row_id),
        ):
            _ = (
                pipeline
                | f"{label}Rows" >> beam.Create(rows, reshuffle=False)
                | f"Write{label}" >> WriteRows(table, partial(recording, name), row_id)
            )

    assert len(warehouse.rows(QUOTES.name)) == len(quotes)
    assert len(warehouse.rows(QUOTES_DEAD_LETTER.name)) == len(heavy)
    assert max(warehouse.request_bytes) < 10_000_000
    assert len(warehouse.request_bytes) <= 1 + -(
        -len(heavy) * 2 * DEAD_LETTER_PAYLOAD_BYTES // 6_000_000
    )
