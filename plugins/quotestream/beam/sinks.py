"""Writing rows through the Warehouse port: insert ids we choose, and every row BigQuery
rejects comes back as a dead-letter row with BigQuery's reason, never vanishes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import now_ms
from quotestream.domain.rows import dead_letter_row
from quotestream.ports import Warehouse

REJECTED = "rejected"
WarehouseFactory = Callable[[], Warehouse]


class InsertRowsFn(beam.DoFn):
    def __init__(
        self, table: str, warehouse_factory: WarehouseFactory, row_id: Callable[[Any], str]
    ) -> None:
        self._table = table
        self._factory = warehouse_factory
        self._row_id = row_id
        self.written = Metrics.counter(NAMESPACE, f"written_{table}")
        self.rejected = Metrics.counter(NAMESPACE, f"rejected_{table}")

    def setup(self) -> None:
        self._warehouse = self._factory()

    def process(self, batch: list[dict[str, Any]]) -> Iterator[Any]:
        # A transport error raises: the runner retries the bundle, and insert ids make the
        # retry harmless. Only rows BigQuery answers with an error are dead-lettered.
        errors = self._warehouse.insert_rows(
            self._table, batch, [self._row_id(row) for row in batch]
        )
        self.written.inc(len(batch) - len(errors))
        self.rejected.inc(len(errors))
        for error in errors:
            row = batch[error["index"]]
            yield TaggedOutput(
                REJECTED,
                dead_letter_row(
                    json.dumps(row, default=str).encode(),
                    {"table": self._table},
                    reason="bigquery_rejected",
                    error=json.dumps(error.get("errors", []), default=str),
                    stage="bigquery_insert",
                    received_ts_ms=now_ms(),
                    message_id=f"{self._table}:{self._row_id(row)}",
                ),
            )

    def teardown(self) -> None:
        warehouse = getattr(self, "_warehouse", None)
        if warehouse is not None:
            warehouse.close()


class WriteRows(beam.PTransform[Any, Any]):
    """rows -> dead-letter rows for whatever BigQuery rejected."""

    def __init__(
        self,
        table: str,
        warehouse_factory: WarehouseFactory,
        row_id: Callable[[Any], str],
        max_batch_bytes: int = 2_000_000,
    ) -> None:
        super().__init__()
        self._table = table
        self._factory = warehouse_factory
        self._row_id = row_id
        self._max_batch_bytes = max_batch_bytes

    def expand(self, rows: PCollection[Any]) -> PCollection[Any]:
        results = (
            rows
            | "Batch"
            >> beam.BatchElements(
                # Batches weighed in bytes: well under BigQuery's 10 MB request limit, even
                # with 64 KB dead-letter payloads.
                min_batch_size=1,
                max_batch_size=self._max_batch_bytes,
                element_size_fn=lambda row: len(json.dumps(row, default=str)),
            )
            | "Insert"
            >> beam.ParDo(InsertRowsFn(self._table, self._factory, self._row_id)).with_outputs(
                REJECTED, main="written"
            )
        )
        return results[REJECTED]
