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

from quotestream.beam.messages import Tracked
from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import dead_letter_row, refused_row_id
from quotestream.ports import Warehouse

WRITTEN = "written"
REJECTED = "rejected"
WarehouseFactory = Callable[[], Warehouse]
_LOOKUP_CHUNK = 500
# BigQuery forgets an insert id about a minute after the first insert, which came no earlier
# than the row's time: a copy of a younger row is left to that (best-effort) dedup, while an
# older one (a redelivery, a client's retry, a relay publish that timed out but went through,
# a catch-up) may follow a first insert BigQuery no longer remembers, so it is looked up.
INSERT_ID_TRUSTED_MS = 30_000

log = logging.getLogger(__name__)
# A warehouse away or overloaded; BigQuery's refusals of single rows come back as row errors.
_TRANSIENT = (GoogleAPICallError, RetryError, ConnectionError, requests.ConnectionError)


class InsertRowsFn(beam.DoFn):
    def __init__(
        self,
        table: str,
        warehouse_factory: WarehouseFactory,
        row_id: Callable[[Any], str],
        stored_id_sql: str | None = None,
        stored_time_column: str | None = None,
    ) -> None:
        self._table = table
        self._factory = warehouse_factory
        self._row_id = row_id
        self._stored_id_sql = stored_id_sql
        self._stored_time_column = stored_time_column
        self.written = Metrics.counter(NAMESPACE, f"written_{table}")
        self.rejected = Metrics.counter(NAMESPACE, f"rejected_{table}")
        self.already_stored = Metrics.counter(NAMESPACE, f"already_stored_{table}")

    def setup(self) -> None:
        self._warehouse = self._factory()

    def process(self, batch: list[Tracked]) -> Iterator[Any]:
        # A warehouse that does not answer is waited for here rather than failing the bundle
        # (the local runner would end the job): each attempt decides anew which rows to look
        # up, so a row whose insert id BigQuery forgot while we waited is looked up too.
        for attempt in itertools.count():
            try:
                stored, inserted, errors = self._insert_new(batch)
                break
            except _TRANSIENT as error:
                pause = min(2.0**attempt, 30.0)
                log.warning("writing %s failed, again in %.0f s: %s", self._table, pause, error)
                time.sleep(pause)
        self.already_stored.inc(len(stored))
        yield from stored
        self.written.inc(len(inserted) - len(errors))
        self.rejected.inc(len(errors))
        refused = {error["index"]: error for error in errors}
        for index, item in enumerate(inserted):
            if index in refused:
                yield TaggedOutput(REJECTED, self._dead_letter(item, refused[index]))
            else:
                yield item

    def _insert_new(
        self, batch: list[Tracked]
    ) -> tuple[list[Tracked], list[Tracked], list[dict[str, Any]]]:
        """Inserts the items not stored yet: (those found stored, those inserted, BigQuery's
        per-row errors indexed over the inserted). Only rows BigQuery refuses become dead
        letters."""
        stored = self._stored_earlier(batch)
        if stored:
            log.info(
                "%d rows already in %s (redelivered or published again): not inserted again",
                len(stored),
                self._table,
            )
        skipped = {id(item) for item in stored}
        inserted = [item for item in batch if id(item) not in skipped]
        if not inserted:
            return stored, [], []
        rows = [item.value for item in inserted]
        errors = self._warehouse.insert_rows(self._table, rows, [self._row_id(r) for r in rows])
        return stored, inserted, errors

    def _may_be_stored(self, item: Tracked, now: int) -> bool:
        if item.receipt is not None and item.receipt.redelivered:
            return True
        if self._stored_time_column is None:
            return False
        return now - to_ms(_moment(item.value[self._stored_time_column])) > INSERT_ID_TRUSTED_MS

    def _stored_earlier(self, batch: Sequence[Tracked]) -> list[Tracked]:
        """The items whose row may be stored already and is. BigQuery's insert-id dedup
        forgets after about a minute, while a message comes again after its ack deadline, or
        after however long a crashed job stayed down, and a quote may be published again
        later still: so look."""
        if self._stored_id_sql is None:
            return []
        now = now_ms()
        to_check = [item for item in batch if self._may_be_stored(item, now)]
        found: set[str] = set()
        by_id = {self._row_id(item.value): item.value for item in to_check}
        # Ordered by time when there is one, so a chunk's BETWEEN spans few partitions.
        column = self._stored_time_column
        ids = sorted(by_id, key=lambda row_id: (by_id[row_id][column] if column else "", row_id))
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            names = ", ".join(f"@id_{index}" for index in range(len(chunk)))
            params: dict[str, Any] = {f"id_{index}": row_id for index, row_id in enumerate(chunk)}
            # Table and expressions are ours; the values travel as query parameters.
            sql = (
                f"SELECT DISTINCT {self._stored_id_sql} AS row_id "  # noqa: S608
                f"FROM {{dataset}}.{self._table} WHERE {self._stored_id_sql} IN ({names})"
            )
            if self._stored_time_column is not None:
                # The copies' own times bound the partitions read, whatever the table's size.
                times = [_moment(by_id[row_id][self._stored_time_column]) for row_id in chunk]
                sql += f" AND {self._stored_time_column} BETWEEN @earliest AND @latest"
                params.update(earliest=min(times), latest=max(times))
            rows = self._warehouse.query(sql, params)
            found.update(str(row["row_id"]) for row in rows)
        return [item for item in to_check if self._row_id(item.value) in found]

    def _dead_letter(self, item: Tracked, error: dict[str, Any]) -> Tracked:
        row = item.value
        return item._replace(
            value=dead_letter_row(
                json.dumps(row, default=str).encode(),
                {"table": self._table},
                reason="bigquery_rejected",
                error=json.dumps(error.get("errors", []), default=str),
                stage="bigquery_insert",
                received_ts_ms=now_ms(),
                message_id=refused_row_id(self._table, self._row_id(row)),
            )
        )

    def teardown(self) -> None:
        warehouse = getattr(self, "_warehouse", None)
        if warehouse is not None:
            warehouse.close()


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class WriteRows(beam.PTransform[Any, Any]):
    """Tracked rows -> outputs `written` (Tracked rows now stored) and `rejected` (Tracked
    dead-letter rows for what BigQuery refused), each keeping its message's receipt.

    `stored_id_sql`, the SQL expression of a row's id in the table, lets a redelivered or
    republished message whose row is already stored pass as written without a second insert;
    `stored_time_column`, the partitioning column, narrows that lookup to the rows' times.
    """

    def __init__(
        self,
        table: str,
        warehouse_factory: WarehouseFactory,
        row_id: Callable[[Any], str],
        stored_id_sql: str | None = None,
        max_batch_bytes: int = 2_000_000,
        stored_time_column: str | None = None,
    ) -> None:
        super().__init__()
        self._insert = InsertRowsFn(
            table, warehouse_factory, row_id, stored_id_sql, stored_time_column
        )
        self._max_batch_bytes = max_batch_bytes

    def expand(self, rows: PCollection[Any]) -> Any:
        return (
            rows
            | "Batch"
            >> beam.BatchElements(
                # Batches weighed in bytes: well under BigQuery's 10 MB request limit, even
                # with 64 KB dead-letter payloads. A fixed size, so a batch is what a bundle
                # holds up to that size: Beam's adaptive sizing would start at one row per
                # insert and fit timings with numpy, which fails on degenerate ones.
                min_batch_size=self._max_batch_bytes,
                max_batch_size=self._max_batch_bytes,
                element_size_fn=lambda item: len(json.dumps(item.value, default=str)),
            )
            | "Insert" >> beam.ParDo(self._insert).with_outputs(REJECTED, main=WRITTEN)
        )
