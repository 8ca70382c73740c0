"""Writing rows through the TableWriter port, once each: every row BigQuery refuses comes back
as a dead-letter row with BigQuery's reason, never vanishes.

Rows are batched, split by shard (a hash of the row's id, so copies of a row meet in one
shard), and each shard's batch is written by a stateful step that keeps, in Beam state:
- the shard's position (its Storage Write stream and next offset): Dataflow hands a retried
  bundle the same batch, from the shuffle before the step, and the state as it was, so the
  batch is appended at the same offset and found there (ports/writes.py);
- the ids the shard wrote in the last REMEMBER_MS, so a copy of a row that comes soon after
  it (a quote published twice, a message delivered again) is not written twice.
A copy that comes later, or after the job restarted with state it does not have, is looked up
in BigQuery, by the batch's own ids: bounded by the batch, however far apart its times.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import apache_beam as beam
import requests
from apache_beam.coders import PickleCoder
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from google.api_core.exceptions import GoogleAPICallError, RetryError

from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import now_ms
from quotestream.domain.rows import dead_letter_row, refused_row_id
from quotestream.ports.queries import StoredRowLookups
from quotestream.ports.writes import NEW, Position, PositionLost, TableWriter

WRITTEN = "written"
REJECTED = "rejected"
TableWriterFactory = Callable[[], TableWriter]
LookupsFactory = Callable[[], StoredRowLookups]
# How long a shard remembers what it wrote. A row whose first write may be older (a quote
# published long ago, or before this job's state began) is looked up instead.
REMEMBER_MS = 30_000
DEFAULT_SHARDS = 4

log = logging.getLogger(__name__)
T = TypeVar("T")
# A warehouse away, overloaded or slow past a query's bound (TimeoutError); BigQuery's
# refusals of single rows come back as refused.
TRANSIENT = (
    GoogleAPICallError,
    RetryError,
    ConnectionError,
    TimeoutError,
    requests.ConnectionError,
)


@dataclass(frozen=True)
class TableRows:
    """What the writer knows of one table's rows: how each is named, how to find which are
    stored already, and (for rows that carry it) the earliest their first write can have
    been: a quote is written no earlier than its event time, less the gate's tolerance for
    clocks ahead."""

    table: str
    row_id: Callable[[Mapping[str, Any]], str]
    stored: Callable[[StoredRowLookups, Sequence[Mapping[str, Any]]], set[str]]
    first_written_from: Callable[[Mapping[str, Any]], int] | None = None


@dataclass
class ShardState:
    """One shard's Beam state: where it writes next, when this job's state for it began, and
    the ids it wrote lately (id -> when)."""

    position: Position = NEW
    born_ms: int = 0
    recent: dict[str, int] = field(default_factory=dict)

    def forget_before(self, moment_ms: int) -> None:
        self.recent = {row_id: at for row_id, at in self.recent.items() if at >= moment_ms}


SHARD_STATE = beam.DoFn.StateParam(ReadModifyWriteStateSpec("shard", PickleCoder()))


class WriteShardFn(beam.DoFn):
    """(shard, batch) -> the batch's rows now stored (`written`), or their dead-letter rows
    (`rejected`) for what BigQuery refused."""

    def __init__(
        self, rows: TableRows, writer_factory: TableWriterFactory, lookups_factory: LookupsFactory
    ) -> None:
        self._rows = rows
        self._table = rows.table
        self._writer_factory = writer_factory
        self._lookups_factory = lookups_factory
        self.written = Metrics.counter(NAMESPACE, f"written_{rows.table}")
        self.rejected = Metrics.counter(NAMESPACE, f"rejected_{rows.table}")
        self.already_stored = Metrics.counter(NAMESPACE, f"already_stored_{rows.table}")
        self.written_again = Metrics.counter(NAMESPACE, f"written_again_{rows.table}")

    def setup(self) -> None:
        self._writer = self._writer_factory()
        self._lookups = self._lookups_factory()

    def process(
        self,
        element: tuple[int, list[dict[str, Any]]],
        state: Any = SHARD_STATE,
    ) -> Iterator[Any]:
        _shard, batch = element
        now = now_ms()
        shard: ShardState = state.read() or ShardState(born_ms=now)
        shard.forget_before(now - REMEMBER_MS)
        ids = [self._rows.row_id(row) for row in batch]
        # A second copy within the batch goes with the first, which is written or refused.
        firsts: dict[str, int] = {}
        for index, row_id in enumerate(ids):
            firsts.setdefault(row_id, index)
        stored, asked = self._stored_already(batch, ids, shard, now)
        fresh = [
            index
            for index, row_id in enumerate(ids)
            if row_id not in stored and firsts[row_id] == index
        ]
        refused_firsts = self._write(batch, ids, fresh, shard, stored, asked)
        refused = {
            index: refused_firsts[firsts[row_id]]
            for index, row_id in enumerate(ids)
            if firsts[row_id] in refused_firsts
        }
        for index in fresh:
            if index not in refused:
                shard.recent[ids[index]] = now
        state.write(shard)
        self.already_stored.inc(len(batch) - len(fresh))
        self.written.inc(len(fresh) - len(refused_firsts))
        self.rejected.inc(len(refused_firsts))
        for index, row in enumerate(batch):
            if index in refused:
                yield TaggedOutput(REJECTED, self._dead_letter(row, ids[index], refused[index]))
            else:
                yield row

    def _stored_already(
        self, batch: list[dict[str, Any]], ids: list[str], shard: ShardState, now: int
    ) -> tuple[set[str], set[str]]:
        """The ids of the batch already stored: what the shard remembers writing, and what a
        lookup finds of the rows the shard's memory cannot vouch for (first written, if ever,
        before it began or before it forgets); and the ids looked up."""
        stored = {row_id for row_id in ids if row_id in shard.recent}
        written_from = self._rows.first_written_from
        if written_from is None:
            return stored, set()
        trusted_from = max(shard.born_ms, now - REMEMBER_MS)
        unsure = list(
            {
                row_id: row
                for row, row_id in zip(batch, ids, strict=True)
                if row_id not in stored and written_from(row) < trusted_from
            }.values()
        )
        if unsure:
            found = self._look_up(unsure)
            log.info(
                "%s: looked up %d of %d rows, possibly written before this shard's memory: "
                "%d stored already (published again or redelivered), not written again",
                self._table,
                len(unsure),
                len(batch),
                len(found),
            )
            stored |= found
        return stored, {self._rows.row_id(row) for row in unsure}

    def _write(
        self,
        batch: list[dict[str, Any]],
        ids: list[str],
        fresh: list[int],
        shard: ShardState,
        stored: set[str],
        asked: set[str],
    ) -> dict[int, list[dict[str, Any]]]:
        """Writes the `fresh` rows at the shard's position and moves it on; returns BigQuery's
        refusals by index in the batch. Trims `fresh` (and grows `stored`) with what a lost
        position's lookup finds stored."""
        looked_up = False
        for attempt in itertools.count():
            if not shard.position.stream and not looked_up:
                # A batch bound for a new stream has no offset to be found at on a retry (the
                # retry opens another stream): what an earlier attempt wrote is looked up.
                unasked = [index for index in fresh if ids[index] not in asked]
                self._settle_by_lookup(batch, ids, unasked, stored, "a new stream")
                fresh[:] = [index for index in fresh if ids[index] not in stored]
                looked_up = True
            if not fresh:
                return {}
            rows = [batch[index] for index in fresh]
            try:
                written = self._writer.write(
                    self._table, rows, [ids[index] for index in fresh], shard.position
                )
            except PositionLost as lost:
                self._settle_by_lookup(batch, ids, fresh, stored, str(lost))
                shard.position, looked_up = NEW, True
                continue
            except TRANSIENT as error:
                # Waited for here rather than failing the bundle (the local runner would end
                # the job); the same rows go again to the same position.
                _back_off(attempt, f"writing {self._table}", error)
                continue
            if not written.again:
                break
            # A retried batch found at its offset. ALREADY_EXISTS does not say which rows the
            # first attempt left out as refused: those are not stored, and are written anew
            # (and refused again, with BigQuery's reason) on a stream of their own.
            self.written_again.inc(len(rows))
            if not self._settle_by_lookup(batch, ids, fresh, stored, "written already"):
                break
            shard.position, looked_up = NEW, True
        shard.position = written.next
        return {fresh[index]: errors for index, errors in written.refused.items()}

    def _settle_by_lookup(
        self,
        batch: list[dict[str, Any]],
        ids: list[str],
        fresh: list[int],
        stored: set[str],
        why: str,
    ) -> int:
        """Moves what BigQuery holds of the `fresh` rows to `stored`; returns how many are
        left to write."""
        if not fresh:
            return 0
        found = self._look_up([batch[index] for index in fresh])
        if found:
            log.warning(
                "%s (%s): %d of %d rows found stored already, not written again",
                self._table,
                why,
                len(found),
                len(fresh),
            )
        stored |= found
        fresh[:] = [index for index in fresh if ids[index] not in found]
        return len(fresh)

    def _look_up(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        return waited(partial(self._rows.stored, self._lookups, rows), self._table)

    def _dead_letter(
        self, row: dict[str, Any], row_id: str, errors: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return dead_letter_row(
            json.dumps(row, default=str).encode(),
            {"table": self._table},
            reason="bigquery_rejected",
            error=json.dumps(errors, default=str),
            stage="bigquery_insert",
            received_ts_ms=now_ms(),
            message_id=refused_row_id(self._table, row_id),
        )

    def teardown(self) -> None:
        for client in (getattr(self, "_writer", None), getattr(self, "_lookups", None)):
            if client is not None:
                client.close()


# What a row without a payload (a quote, a bar) is counted as: the gate's limits on each field
# keep them under it (about 300 bytes as JSON).
SMALL_ROW_BYTES = 1_024


def _weight(row: dict[str, Any]) -> int:
    """Only a dead letter, which keeps the message's payload, is weighed: serialising each
    quote row to weigh it cost a tenth of the load's transforms."""
    return len(json.dumps(row, default=str)) if "payload" in row else SMALL_ROW_BYTES


class SplitByShard(beam.DoFn):
    """batch -> (shard, the batch's rows of that shard), for each shard it holds."""

    def __init__(self, row_id: Callable[[Mapping[str, Any]], str], shards: int) -> None:
        self._row_id = row_id
        self._shards = shards

    def process(self, batch: list[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for row in batch:
            shard = zlib.crc32(self._row_id(row).encode()) % self._shards
            by_shard.setdefault(shard, []).append(row)
        yield from by_shard.items()


class WriteRows(beam.PTransform[Any, Any]):
    """Rows -> outputs `written` (rows now stored, or found stored already) and `rejected`
    (dead-letter rows for what BigQuery refused)."""

    def __init__(
        self,
        rows: TableRows,
        writer_factory: TableWriterFactory,
        lookups_factory: LookupsFactory,
        shards: int = DEFAULT_SHARDS,
        max_batch_bytes: int = 6_000_000,
    ) -> None:
        super().__init__()
        self._rows = rows
        self._write = WriteShardFn(rows, writer_factory, lookups_factory)
        self._shards = shards
        self._max_batch_bytes = max_batch_bytes

    def expand(self, rows: PCollection[Any]) -> Any:
        return (
            rows
            | "Batch"
            >> beam.BatchElements(
                # Batches weighed in bytes: under BigQuery's 10 MB request limit, even with
                # 64 KB dead-letter payloads, and a bundle's quotes (5,000 at most from a
                # local pull, at SMALL_ROW_BYTES each) in one batch. A fixed size, so a batch
                # is what a bundle holds up to that size: Beam's adaptive sizing would start at
                # one row per write and fit timings with numpy, which fails on degenerate ones.
                min_batch_size=self._max_batch_bytes,
                max_batch_size=self._max_batch_bytes,
                element_size_fn=_weight,
            )
            | "Shard"
            >> beam.ParDo(SplitByShard(self._rows.row_id, self._shards)).with_output_types(
                # The state's key coder, deterministic as Dataflow needs it.
                beam.typehints.KV[int, Any]
            )
            | "Write" >> beam.ParDo(self._write).with_outputs(REJECTED, main=WRITTEN)
        )


def waited(lookup: Callable[[], T], what: str) -> T:
    """`lookup()`, asked again after each transient failure, never skipped: a row written
    without its lookup could be written twice, a bar seeded without one emitted wrong."""
    for attempt in itertools.count():
        try:
            return lookup()
        except TRANSIENT as error:
            _back_off(attempt, f"looking up {what}", error)
    raise AssertionError("unreachable")


def _back_off(attempt: int, doing: str, error: Exception) -> None:
    """Waits 1, 2, 4 ... up to 30 s after the `attempt`th failure of `doing`, and says so."""
    pause = min(2.0**attempt, 30.0)
    log.warning("%s failed, again in %.0f s: %s", doing, pause, error)
    time.sleep(pause)
