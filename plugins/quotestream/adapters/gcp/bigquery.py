"""BigQuery through the official client: the same code provisions and loads the emulator and
a real project (on the local target the client is pointed at BIGQUERY_EMULATOR_HOST)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import Conflict, NotFound
from google.cloud import bigquery

from quotestream.domain.schemas import Column, TableSpec
from quotestream.ports.resources import IncompatibleChange, Outcome, ResourceResult

# bool before int: a bool is an int too.
_PARAM_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOL"),
    (int, "INT64"),
    (float, "FLOAT64"),
    (datetime, "TIMESTAMP"),
    (str, "STRING"),
)


INSERT_RETRY_DEADLINE_S = 20.0
# Each insert request's own bound: without one the client waits for ever on a connection the
# other end dropped without a word (a half-open one), and the load job with it.
INSERT_REQUEST_TIMEOUT_S = 60.0


def _parameter(name: str, value: Any) -> bigquery.ScalarQueryParameter:
    kind = next((kind for cls, kind in _PARAM_TYPES if isinstance(value, cls)), None)
    if kind is None:
        raise TypeError(f"query parameter {name}: no BigQuery type for {type(value).__name__}")
    if kind == "TIMESTAMP":
        # Subclasses (pendulum's, Airflow's) do not serialize; a plain aware datetime does.
        value = datetime.fromtimestamp(value.timestamp(), tz=UTC)
    return bigquery.ScalarQueryParameter(name, kind, value)


def schema_fields(columns: Sequence[Column]) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(
            column.name,
            column.type,
            mode=column.mode,
            description=column.description,
            fields=schema_fields(column.fields),
        )
        for column in columns
    ]


class BigQueryWarehouse:
    def __init__(
        self,
        project: str,
        dataset: str,
        *,
        location: str = "US",
        credentials: Any = None,
        api_endpoint: str | None = None,
        query_timeout_s: float | None = None,
        insert_timeout_s: float = INSERT_REQUEST_TIMEOUT_S,
    ) -> None:
        self._project = project
        self._insert_timeout_s = insert_timeout_s
        self._dataset = dataset
        self._location = location
        # A caller that must answer in time (the operator page) bounds each query: BigQuery
        # cancels the job past it, and the client stops waiting.
        self._query_timeout_s = query_timeout_s
        self._client = bigquery.Client(
            project=project,
            credentials=credentials,
            location=location,
            client_options=ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None,
        )

    @property
    def dataset(self) -> str:
        return self._dataset

    def table_id(self, table: str) -> str:
        return f"{self._project}.{self._dataset}.{table}"

    def ensure_dataset(self) -> ResourceResult:
        dataset = bigquery.Dataset(f"{self._project}.{self._dataset}")
        dataset.location = self._location
        try:
            self._client.create_dataset(dataset)
        except Conflict:
            return ResourceResult("bigquery dataset", self._dataset, Outcome.EXISTS)
        return ResourceResult("bigquery dataset", self._dataset, Outcome.CREATED)

    def ensure_table(self, spec: TableSpec) -> ResourceResult:
        try:
            live = self._client.get_table(self.table_id(spec.name))
        except NotFound:
            self._client.create_table(self._new_table(spec))
            return ResourceResult("bigquery table", spec.name, Outcome.CREATED)
        return self._reconcile(spec, live)

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], row_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Streaming insert. Returns BigQuery's per-row errors ({index, errors}); the valid
        rows of the call land regardless (skipInvalidRows), and rows with the same row id
        inside BigQuery's dedup window are stored once."""
        errors = self._client.insert_rows_json(
            self.table_id(table),
            list(rows),
            row_ids=list(row_ids) if row_ids else None,
            skip_invalid_rows=True,
            # The client would retry for ten minutes, long past BigQuery's insert-id memory
            # (about one): the caller retries instead, and looks first for what is stored.
            retry=bigquery.DEFAULT_RETRY.with_deadline(INSERT_RETRY_DEADLINE_S),
            timeout=self._insert_timeout_s,
        )
        return [dict(error) for error in errors]

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run standard SQL. `{dataset}` in the text names this warehouse's dataset."""
        job = self._run(sql, params)
        # Without a bound of our own, the client's default: it bounds each of its requests
        # (an explicit None would wait for ever on a response that never comes).
        rows = (
            job.result()
            if self._query_timeout_s is None
            else job.result(timeout=self._query_timeout_s)
        )
        return [dict(row.items()) for row in rows]

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a DML statement; returns the rows it affected."""
        job = self._run(sql, params)
        job.result()
        return int(job.num_dml_affected_rows or 0)

    def load_rows(self, table: str, spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> None:
        """A batch load job (not streaming): rows are final at once, DML may touch them."""
        config = bigquery.LoadJobConfig(
            schema=schema_fields(spec.columns),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        self._client.load_table_from_json(
            [dict(row) for row in rows], self.table_id(table), job_config=config
        ).result()

    def create_scratch_table(self, table: str, spec: TableSpec) -> None:
        """An empty table with `spec`'s schema, replacing any leftover of the same name."""
        self._client.delete_table(self.table_id(table), not_found_ok=True)
        scratch = bigquery.Table(self.table_id(table), schema=schema_fields(spec.columns))
        self._client.create_table(scratch)

    def drop_table(self, table: str) -> None:
        self._client.delete_table(self.table_id(table), not_found_ok=True)

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> bigquery.QueryJob:
        config = bigquery.QueryJobConfig(
            query_parameters=[_parameter(name, value) for name, value in (params or {}).items()]
        )
        text = sql.replace("{dataset}", f"`{self._project}.{self._dataset}`")
        if self._query_timeout_s is None:
            return self._client.query(text, job_config=config)
        config.job_timeout_ms = int(self._query_timeout_s * 1000)
        return self._client.query(text, job_config=config, timeout=self._query_timeout_s)

    def delete_dataset(self) -> bool:
        try:
            self._client.delete_dataset(
                f"{self._project}.{self._dataset}", delete_contents=True, not_found_ok=False
            )
        except NotFound:
            return False
        return True

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _new_table(self, spec: TableSpec) -> bigquery.Table:
        table = bigquery.Table(self.table_id(spec.name), schema=schema_fields(spec.columns))
        table.description = spec.description
        if spec.partition_column:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=spec.partition_column
            )
        if spec.clustering:
            table.clustering_fields = list(spec.clustering)
        return table

    def _reconcile(self, spec: TableSpec, live: bigquery.Table) -> ResourceResult:
        live_partition = live.time_partitioning.field if live.time_partitioning else None
        if live_partition != spec.partition_column:
            raise IncompatibleChange(
                f"table {spec.name}: partitioned on {live_partition!r}, wanted "
                f"{spec.partition_column!r}; partitioning cannot change in place"
            )
        schema, added = _merged_schema(spec.name, list(live.schema), spec.columns)
        changes = []
        if added:
            live.schema = schema
            changes.append("schema")
        if list(live.clustering_fields or []) != list(spec.clustering):
            live.clustering_fields = list(spec.clustering) or None
            changes.append("clustering_fields")
        if not changes:
            return ResourceResult("bigquery table", spec.name, Outcome.EXISTS)
        self._client.update_table(live, changes)
        detail = f"added {', '.join(added)}" if added else "clustering"
        return ResourceResult("bigquery table", spec.name, Outcome.UPDATED, detail)


def _merged_schema(
    where: str, live: list[bigquery.SchemaField], wanted: Sequence[Column]
) -> tuple[list[bigquery.SchemaField], list[str]]:
    """The live schema plus the wanted columns it lacks. Anything else that differs is an
    IncompatibleChange naming the column: BigQuery cannot apply it without losing data."""
    live_by_name = {field.name: field for field in live}
    wanted_names = {column.name for column in wanted}
    for existing in live:
        if existing.name not in wanted_names:
            raise IncompatibleChange(
                f"{where}.{existing.name} exists in BigQuery but not in the schema: columns are "
                "never dropped automatically; drop it by hand or add it back to the schema"
            )
    merged = list(live)
    added: list[str] = []
    for column in wanted:
        name = f"{where}.{column.name}"
        field = live_by_name.get(column.name)
        if field is None:
            if column.mode == "REQUIRED":
                raise IncompatibleChange(
                    f"{name} is new and REQUIRED: existing rows have no value; add it as NULLABLE"
                )
            merged.extend(schema_fields([column]))
            added.append(column.name)
            continue
        live_type = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD"}
        field_type = live_type.get(field.field_type, field.field_type)
        if field_type != column.type:
            raise IncompatibleChange(f"{name} is {field_type} in BigQuery, {column.type} wanted")
        if (field.mode or "NULLABLE") != column.mode:
            raise IncompatibleChange(f"{name} is {field.mode} in BigQuery, {column.mode} wanted")
        if column.fields:
            _, nested_added = _merged_schema(name, list(field.fields), column.fields)
            if nested_added:
                raise IncompatibleChange(
                    f"{name}: adding nested fields ({', '.join(nested_added)}) is not supported"
                )
    return merged, added
