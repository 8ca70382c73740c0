"""The load's writer step over the fake Storage Write writer: a retried batch at its offset is
written once, a lost stream is settled by a lookup, copies of a row are found in the shard's
memory or looked up (by each batch's own ids, so that what a lookup costs and holds is bounded
by the batch whatever its event times), refusals become dead letters with BigQuery's reason,
and batches stay under BigQuery's request limit."""

from __future__ import annotations

import copy
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
from apache_beam.pvalue import TaggedOutput

from quotestream.adapters.gcp.bigquery_write import INSERT_ALL, InsertAllTableWriter
from quotestream.beam.load import DEAD_LETTER_ROWS, QUOTE_ROWS
from quotestream.beam.sinks import (
    DEFAULT_SHARDS,
    REJECTED,
    REMEMBER_MS,
    ShardState,
    WriteRows,
    WriteShardFn,
)
from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import DEAD_LETTER_PAYLOAD_BYTES
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from quotestream.ports.writes import NEW
from tests.support.fakes import DAY_MS, InMemoryStoredRowLookups, InMemoryWarehouse
from tests.support.pipelines import direct_pipeline
from tests.support.rows import dead_letter_at, quote_at
from tests.support.table_writers import InMemoryTableWriter

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


def recording_writer(name: str) -> InsertAllTableWriter:
    return InsertAllTableWriter(recording(name))


def recording_lookups(name: str) -> InMemoryStoredRowLookups:
    return InMemoryStoredRowLookups(recording(name))


@dataclass
class ShardStateCell:
    """A shard's Beam state, as the runner hands it to the step."""

    value: Any = None

    def read(self) -> Any:
        return self.value

    def write(self, value: Any) -> None:
        self.value = value


def writer(table_writer: Any, queries: Any) -> WriteShardFn:
    fn = WriteShardFn(QUOTE_ROWS, lambda: table_writer, lambda: queries)
    fn.setup()
    return fn


def written(
    fn: WriteShardFn, rows: list[dict[str, Any]], state: ShardStateCell | None = None
) -> list[Any]:
    return list(fn.process((0, rows), state=state or ShardStateCell()))


def rows_from(start_ms: int, count: int, step_ms: int = 1_000) -> list[dict[str, Any]]:
    return [quote_at(start_ms + index * step_ms) for index in range(count)]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["event_id"] for row in rows]


def born(ms_ago: int) -> ShardStateCell:
    """A shard whose state began `ms_ago` in this job."""
    return ShardStateCell(ShardState(born_ms=now_ms() - ms_ago))


def test_each_batch_asks_for_its_own_old_ids_once_and_copies_are_not_written() -> None:
    warehouse = RecordingWarehouse()
    queries = InMemoryStoredRowLookups(warehouse)
    backlog = rows_from(now_ms() - 3_600_000, 120)
    warehouse.insert_rows(QUOTES.name, backlog[:5], ids(backlog[:5]))
    fn, state = writer(InMemoryTableWriter(warehouse), queries), ShardStateCell()

    batches = [backlog[offset : offset + 20] for offset in range(0, len(backlog), 20)]
    for batch in batches:
        assert len(written(fn, batch, state)) == len(batch)

    assert sorted(ids(warehouse.rows(QUOTES.name))) == sorted(ids(backlog))
    assert [sorted(asked) for asked in queries.lookups] == [sorted(ids(b)) for b in batches]
    # Copies of what is stored, from this writer or another, are found and not sent again.
    writes = len(warehouse.request_bytes)
    assert len(written(fn, backlog[30:60], state)) == 30
    assert len(warehouse.request_bytes) == writes
    assert len(warehouse.rows(QUOTES.name)) == len(backlog)


def test_young_rows_are_remembered_by_their_shard_and_not_looked_up() -> None:
    warehouse = InMemoryWarehouse()
    queries = InMemoryStoredRowLookups(warehouse)
    now = now_ms()
    old = [quote_at(now - 40 * DAY_MS), quote_at(now - REMEMBER_MS - 10_000)]
    young = quote_at(now - 1_000)
    fn, state = writer(InMemoryTableWriter(warehouse), queries), born(600_000)

    written(fn, [*old, young], state)
    # A copy of the young quote (published twice): found in the shard's memory.
    assert written(fn, [young, quote_at(now - 2_000)], state) == [young, quote_at(now - 2_000)]

    # The young quote is asked for once, as its batch opened the shard's stream (a retry of
    # that batch would open another): not as a copy.
    assert [sorted(asked) for asked in queries.lookups] == [sorted(ids(old)), ids([young])]
    assert sorted(ids(warehouse.rows(QUOTES.name))) == sorted(
        ids([*old, young, quote_at(now - 2_000)])
    )


def test_after_a_restart_young_rows_from_before_it_are_looked_up() -> None:
    """A job's state begins empty: a quote stamped before it began may have been written by
    the job before, whose memory is gone."""
    warehouse = InMemoryWarehouse()
    queries = InMemoryStoredRowLookups(warehouse)
    now = now_ms()
    before = quote_at(now - 3_000)
    InMemoryTableWriter(warehouse).write(QUOTES.name, [before], ids([before]), NEW)

    assert written(writer(InMemoryTableWriter(warehouse), queries), [before]) == [before]

    assert queries.lookups == [ids([before])]
    assert len(warehouse.rows(QUOTES.name)) == 1


def test_a_retried_batch_at_the_same_offset_is_written_once() -> None:
    table_writer = InMemoryTableWriter()
    queries = InMemoryStoredRowLookups(table_writer.warehouse)
    fn, state = writer(table_writer, queries), born(600_000)
    batch = rows_from(now_ms() - 5_000, 3, step_ms=10)
    before = copy.deepcopy(state.value)

    first = written(fn, batch, state)
    # Dataflow retries the bundle: its state as it was, the same batch from the shuffle.
    again = written(fn, batch, ShardStateCell(before))

    assert first == again == batch
    assert len(table_writer.warehouse.rows(QUOTES.name)) == 3
    assert table_writer.requests == [3]
    assert fn.written_again.metric_name.name == "written_again_quotes"


def test_a_lost_stream_is_settled_by_a_lookup_and_the_rest_goes_to_a_new_stream() -> None:
    table_writer = InMemoryTableWriter()
    queries = InMemoryStoredRowLookups(table_writer.warehouse)
    fn, state = writer(table_writer, queries), born(600_000)
    now = now_ms()
    batch = rows_from(now - 5_000, 3, step_ms=10)
    before = copy.deepcopy(state.value)
    written(fn, batch, state)
    table_writer.forget_streams()  # the emulator restarted

    # The bundle retried with two more rows: the first three were written, the rest was not.
    retried = [*batch, *rows_from(now - 4_000, 2, step_ms=10)]
    assert written(fn, retried, ShardStateCell(before)) == retried

    assert sorted(ids(table_writer.warehouse.rows(QUOTES.name))) == sorted(ids(retried))
    assert queries.lookups[-1] == ids(retried)
    assert len(table_writer.streams) == 1


def test_refused_rows_become_dead_letters_with_bigquerys_reason_even_on_a_retry() -> None:
    warehouse = InMemoryWarehouse(
        reject=lambda _table, row: "bad bid" if row["bid"] == "9" else None
    )
    table_writer = InMemoryTableWriter(warehouse)
    queries = InMemoryStoredRowLookups(warehouse)
    fn, state = writer(table_writer, queries), born(600_000)
    now = now_ms()
    batch = [quote_at(now - 3_000), quote_at(now - 2_000, bid="9"), quote_at(now - 1_000)]
    before = copy.deepcopy(state.value)

    for attempt in (state, ShardStateCell(before)):
        outputs = written(fn, batch, attempt)
        dead = [output.value for output in outputs if isinstance(output, TaggedOutput)]
        assert [output for output in outputs if not isinstance(output, TaggedOutput)] == [
            batch[0],
            batch[2],
        ]
        (letter,) = dead
        assert letter["reason"] == "bigquery_rejected"
        assert "bad bid" in letter["error"]
        assert letter["message_id"] == f"quotes:{batch[1]['event_id']}"
    assert {output.tag for output in outputs if isinstance(output, TaggedOutput)} == {REJECTED}
    assert len(warehouse.rows(QUOTES.name)) == 2


def test_a_warehouse_away_is_waited_for_and_the_batch_goes_to_the_same_offset() -> None:
    table_writer = InMemoryTableWriter(unavailable=1)
    fn = writer(table_writer, InMemoryStoredRowLookups(table_writer.warehouse))
    batch = rows_from(now_ms() - 2_000, 2, step_ms=10)

    assert written(fn, batch, born(600_000)) == batch

    assert table_writer.requests == [2]


def test_the_insert_all_writer_answers_refusals_by_index_and_one_constant_position() -> None:
    warehouse = InMemoryWarehouse(reject=lambda _table, row: "no" if row["bid"] == "9" else None)
    rows = [quote_at(now_ms()), quote_at(now_ms() - 1, bid="9")]

    result = InsertAllTableWriter(warehouse).write(QUOTES.name, rows, ids(rows), NEW)

    assert result.next == INSERT_ALL != NEW
    assert list(result.refused) == [1]
    assert result.refused[1][0]["message"] == "no"


def test_with_insert_all_only_a_shards_first_batch_is_looked_up_as_bound_for_a_new_stream() -> None:
    warehouse = InMemoryWarehouse()
    queries = InMemoryStoredRowLookups(warehouse)
    fn, state = writer(InsertAllTableWriter(warehouse), queries), born(600_000)
    first, second = rows_from(now_ms() - 3_000, 2), rows_from(now_ms() - 1_000, 2, step_ms=10)

    written(fn, first, state)
    written(fn, second, state)

    assert queries.lookups == [ids(first)]
    assert sorted(ids(warehouse.rows(QUOTES.name))) == sorted(ids(first + second))


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
    fn = writer(InsertAllTableWriter(warehouse), queries)
    # What the first batch's code paths cache once (metric cells, logging) is not the batch's.
    written(fn, rows_from(now - 31 * DAY_MS, 10))
    queries.answered.clear()
    warehouse.inserted = 0

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
        for label, rows, table_rows in (
            ("Quotes", quotes, QUOTE_ROWS),
            ("DeadLetters", heavy, DEAD_LETTER_ROWS),
        ):
            _ = (
                pipeline
                | f"{label}Rows" >> beam.Create(rows, reshuffle=False)
                | f"Write{label}"
                >> WriteRows(
                    table_rows,
                    partial(recording_writer, name),
                    partial(recording_lookups, name),
                )
            )

    assert len(warehouse.rows(QUOTES.name)) == len(quotes)
    assert len(warehouse.rows(QUOTES_DEAD_LETTER.name)) == len(heavy)
    assert max(warehouse.request_bytes) < 10_000_000
    # A batch goes in one request per shard.
    assert len(warehouse.request_bytes) <= DEFAULT_SHARDS * (
        2 + -(-len(heavy) * 2 * DEAD_LETTER_PAYLOAD_BYTES // 6_000_000)
    )
