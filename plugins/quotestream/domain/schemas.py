"""BigQuery table definitions, declared once and used by provisioning, pipelines and tests.

Plain data rather than google-cloud-bigquery objects so the domain stays free of I/O
libraries; the BigQuery adapter turns these into `SchemaField`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["STRING", "NUMERIC", "TIMESTAMP", "INTEGER", "FLOAT", "BOOLEAN", "RECORD"]
Mode = Literal["REQUIRED", "NULLABLE", "REPEATED"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: FieldType
    mode: Mode = "NULLABLE"
    description: str = ""
    fields: tuple[Column, ...] = ()


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    description: str
    columns: tuple[Column, ...]
    partition_column: str | None = None
    clustering: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


def _c(name: str, type_: FieldType, mode: Mode = "NULLABLE", description: str = "") -> Column:
    return Column(name, type_, mode, description)


QUOTES = TableSpec(
    name="quotes",
    description="One row per quote event, deduplicated by event_id.",
    columns=(
        _c("event_id", "STRING", "REQUIRED", "Stable id derived from pair, event_ts and source"),
        _c("pair", "STRING", "REQUIRED", "Currency pair, BASE-QUOTE, e.g. USD-BRL"),
        _c("base", "STRING", "REQUIRED"),
        _c("quote_currency", "STRING", "REQUIRED"),
        _c("bid", "NUMERIC", "REQUIRED"),
        _c("ask", "NUMERIC", "REQUIRED"),
        _c("mid", "NUMERIC", "REQUIRED"),
        _c("spread", "NUMERIC", "REQUIRED"),
        _c("event_ts", "TIMESTAMP", "REQUIRED", "When the market produced the quote (UTC)"),
        _c("source", "STRING", "REQUIRED", "Producer of the quote, part of event_id"),
        _c("ingest_ts", "TIMESTAMP", "NULLABLE", "When the pipeline wrote the row"),
    ),
    partition_column="event_ts",
    clustering=("pair",),
)

# Modelled on the error table of Google's Pub/Sub-to-BigQuery template: the original bytes
# survive (base64 when they are not UTF-8) so a fixed message can be replayed.
QUOTES_DEAD_LETTER = TableSpec(
    name="quotes_dead_letter",
    description="Every message the pipeline could not load, with why and where it failed.",
    columns=(
        _c("payload", "STRING", "NULLABLE", "The message body as received (UTF-8 or base64)"),
        _c("payload_encoding", "STRING", "REQUIRED", "utf-8 or base64"),
        Column(
            "attributes",
            "RECORD",
            "REPEATED",
            "Pub/Sub attributes of the message",
            (_c("key", "STRING", "REQUIRED"), _c("value", "STRING", "NULLABLE")),
        ),
        _c("message_id", "STRING", "NULLABLE", "Pub/Sub message id, when there is one"),
        _c("reason", "STRING", "REQUIRED", "Machine-readable reason, e.g. crossed_market"),
        _c("error", "STRING", "NULLABLE", "Human-readable error detail"),
        _c("stage", "STRING", "REQUIRED", "Where it failed: parse, bigquery_insert, ..."),
        _c("received_ts", "TIMESTAMP", "REQUIRED", "When the pipeline dead-lettered it"),
    ),
    partition_column="received_ts",
    clustering=("reason",),
)

QUOTE_BARS_1M = TableSpec(
    name="quote_bars_1m",
    description="One-minute OHLC bars of mid per pair, from event-time windows.",
    columns=(
        _c("pair", "STRING", "REQUIRED"),
        _c("window_start", "TIMESTAMP", "REQUIRED"),
        _c("window_end", "TIMESTAMP", "REQUIRED"),
        _c("open", "NUMERIC", "REQUIRED"),
        _c("high", "NUMERIC", "REQUIRED"),
        _c("low", "NUMERIC", "REQUIRED"),
        _c("close", "NUMERIC", "REQUIRED"),
        _c("tick_count", "INTEGER", "REQUIRED"),
        _c("pane", "STRING", "NULLABLE", "Beam pane timing and index: ON_TIME:0, LATE:1, ..."),
        _c("pane_index", "INTEGER", "NULLABLE", "Pane number in the window; the highest is final"),
    ),
    partition_column="window_start",
    clustering=("pair",),
)

DQ_RESULTS = TableSpec(
    name="dq_results",
    description="One row per data-quality check run.",
    columns=(
        _c("check_name", "STRING", "REQUIRED"),
        _c("interval_start", "TIMESTAMP", "REQUIRED"),
        _c("interval_end", "TIMESTAMP", "REQUIRED"),
        _c("pair", "STRING", "NULLABLE", "Set when the check is per pair"),
        _c("passed", "BOOLEAN", "REQUIRED"),
        _c("observed", "FLOAT", "NULLABLE"),
        _c("threshold", "FLOAT", "NULLABLE"),
        _c("details", "STRING", "NULLABLE"),
        _c("run_id", "STRING", "NULLABLE", "Airflow run id that produced the result"),
        _c("checked_ts", "TIMESTAMP", "REQUIRED"),
    ),
    partition_column="interval_start",
    clustering=("check_name",),
)

# Streamed dead letters cannot be updated (BigQuery refuses DML on its streaming buffer): a
# replay's verdict on one is a row here, and the dead letter itself is never touched.
DEAD_LETTER_REPLAYS = TableSpec(
    name="dead_letter_replays",
    description="What each replay of a dead letter through the gate made of it.",
    columns=(
        _c("dead_letter_id", "STRING", "REQUIRED", "domain.rows.dead_letter_row_id of the row"),
        _c("outcome", "STRING", "REQUIRED", "replayed (now in quotes) or still_failing"),
        _c("event_id", "STRING", "NULLABLE", "The quote it became, when replayed"),
        _c("reason", "STRING", "NULLABLE", "The gate's reason now, when still failing"),
        _c("original_reason", "STRING", "REQUIRED", "The dead letter's reason"),
        _c("run_id", "STRING", "NULLABLE", "Airflow run id of the replay"),
        _c("replayed_ts", "TIMESTAMP", "REQUIRED"),
    ),
    partition_column="replayed_ts",
    clustering=("outcome",),
)

ALL_TABLES: tuple[TableSpec, ...] = (
    QUOTES,
    QUOTES_DEAD_LETTER,
    QUOTE_BARS_1M,
    DQ_RESULTS,
    DEAD_LETTER_REPLAYS,
)

# The tables the load job writes, row by row.
LOADED_TABLES: tuple[TableSpec, ...] = (QUOTES, QUOTES_DEAD_LETTER, QUOTE_BARS_1M)
