"""Writing rows through the Warehouse port: insert ids we choose, and every row BigQuery
rejects comes back as a dead-letter row with BigQuery's reason, never vanishes."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import apache_beam as beam
import requests
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from google.api_core.exceptions import GoogleAPICallError, RetryError

from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import dead_letter_row, refused_row_id
from quotestream.ports import Warehouse
from quotestream.ports.queries import StoredRowLookups

WRITTEN = "written"
REJECTED = "rejected"
WarehouseFactory = Callable[[], Warehouse]
LookupsFactory = Callable[[], StoredRowLookups]
# BigQuery forgets an insert id about a minute after the first insert, which came no earlier
# than the row's time: a copy of a younger row is left to that (best-effort) dedup, while an
# older one (a redelivery, a client's retry, a relay publish that timed out but went through,
# a catch-up) may follow a first insert BigQuery no longer remembers, so it is looked up.
INSERT_ID_TRUSTED_MS = 30_000

log = logging.getLogger(__name__)
# A warehouse away or overloaded; BigQuery's refusals of single rows come back as row errors.
TRANSIENT = (GoogleAPICallError, RetryError, ConnectionError, requests.ConnectionError)


class InsertRowsFn(beam.DoFn):
    def __init__(
        self,
        table: str,
        warehouse_factory: WarehouseFactory,
        row_id: Callable[[Any], str],
        lookups_factory: LookupsFactory | None = None,
    ) -> None:
        self._table = table
        self._factory = warehouse_factory
        self._row_id = row_id
        self._lookups_factory = lookups_factory
        self.written = Metrics.counter(NAMESPACE, f"written_{table}")
        self.rejected = Metrics.counter(NAMESPACE, f"rejected_{table}")
        self.already_stored = Metrics.counter(NAMESPACE, f"already_stored_{table}")

    def setup(self) -> None:
        self._warehouse = self._factory()
        self._lookups = self._lookups_factory() if self._lookups_factory else None

    def process(self, batch: list[dict[str, Any]]) -> Iterator[Any]:
        # A warehouse that does not answer is waited for here rather than failing the bundle
        # (the local runner would end the job): each attempt decides anew which rows to look
        # up, so a row whose insert id BigQuery forgot while we waited is looked up too.
        for attempt in itertools.count():
            try:
                stored, inserted, errors = self._insert_new(batch)
                break
            except TRANSIENT as error:
                pause = min(2.0**attempt, 30.0)
                log.warning("writing %s failed, again in %.0f s: %s", self._table, pause, error)
                time.sleep(pause)
        self.already_stored.inc(len(stored))
        yield from stored
        self.written.inc(len(inserted) - len(errors))
        self.rejected.inc(len(errors))
        refused = {error["index"]: error for error in errors}
        for index, row in enumerate(inserted):
            if index in refused:
                yield TaggedOutput(REJECTED, self._dead_letter(row, refused[index]))
            else:
                yield row

    def _insert_new(
        self, batch: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Inserts the rows not stored yet: (those found stored, those inserted, BigQuery's
        per-row errors indexed over the inserted). Only rows BigQuery refuses become dead
        letters."""
        stored = self._stored_earlier(batch)
        skipped = {id(row) for row in stored}
        inserted = [row for row in batch if id(row) not in skipped]
        if not inserted:
            return stored, [], []
        row_ids = [self._row_id(row) for row in inserted]
        errors = self._warehouse.insert_rows(self._table, inserted, row_ids)
        return stored, inserted, errors

    def _stored_earlier(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The quote rows old enough that BigQuery's insert-id dedup may have forgotten them,
        that are stored: a quote may be published again long after its first insert. (A
        message delivered again is settled at the source, before it gets here.)

        The lookup asks for the batch's own event ids, just before the insert: what it costs
        and returns is bounded by the batch however far apart its event times are, and
        nothing outlives the batch. A copy another writer (a Dataflow worker) inserts after
        the lookup is inserted less than a minute before ours, so BigQuery's insert-id dedup
        takes ours. (The backfill's inserts have no insert id: a backfill of an hour the load
        is still catching up on can race it.)"""
        if self._lookups is None:
            return []
        now = now_ms()
        old = {
            str(row["event_id"]): moment
            for row in batch
            if now - to_ms(moment := _moment(row["event_ts"])) > INSERT_ID_TRUSTED_MS
        }
        if not old:
            return []
        stored_ids = self._lookups.stored_quote_ids(old)
        stored = [row for row in batch if row["event_id"] in stored_ids]
        log.info(
            "%s: looked up %d of %d rows, older than %d s: %d stored already (published again "
            "or redelivered), not inserted again",
            self._table,
            len(old),
            len(batch),
            INSERT_ID_TRUSTED_MS // 1000,
            len(stored),
        )
        return stored

    def _dead_letter(self, row: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
        return dead_letter_row(
            json.dumps(row, default=str).encode(),
            {"table": self._table},
            reason="bigquery_rejected",
            error=json.dumps(error.get("errors", []), default=str),
            stage="bigquery_insert",
            received_ts_ms=now_ms(),
            message_id=refused_row_id(self._table, self._row_id(row)),
        )

    def teardown(self) -> None:
        for client in (getattr(self, "_warehouse", None), getattr(self, "_lookups", None)):
            if client is not None:
                client.close()


# What a row without a payload (a quote, a bar) is counted as: the gate's limits on each field
# keep them under it (about 300 bytes as JSON).
SMALL_ROW_BYTES = 1_024


def _weight(row: dict[str, Any]) -> int:
    """Only a dead letter, which keeps the message's payload, is weighed: serialising each
    quote row to weigh it cost a tenth of the load's transforms."""
    return len(json.dumps(row, default=str)) if "payload" in row else SMALL_ROW_BYTES


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class WriteRows(beam.PTransform[Any, Any]):
    """Rows -> outputs `written` (rows now stored) and `rejected` (dead-letter rows for what
    BigQuery refused).

    With `lookups_factory` (for quote rows), a quote published again whose row is already
    stored passes as written without a second insert.
    """

    def __init__(
        self,
        table: str,
        warehouse_factory: WarehouseFactory,
        row_id: Callable[[Any], str],
        lookups_factory: LookupsFactory | None = None,
        max_batch_bytes: int = 6_000_000,
    ) -> None:
        super().__init__()
        self._insert = InsertRowsFn(table, warehouse_factory, row_id, lookups_factory)
        self._max_batch_bytes = max_batch_bytes

    def expand(self, rows: PCollection[Any]) -> Any:
        return (
            rows
            | "Batch"
            >> beam.BatchElements(
                # Batches weighed in bytes: under BigQuery's 10 MB request limit, even with
                # 64 KB dead-letter payloads, and a bundle's quotes (5,000 at most from a
                # local pull, at SMALL_ROW_BYTES each) in one insert. A fixed size, so a batch
                # is what a bundle holds up to that size: Beam's adaptive sizing would start at
                # one row per insert and fit timings with numpy, which fails on degenerate ones.
                min_batch_size=self._max_batch_bytes,
                max_batch_size=self._max_batch_bytes,
                element_size_fn=_weight,
            )
            | "Insert" >> beam.ParDo(self._insert).with_outputs(REJECTED, main=WRITTEN)
        )
