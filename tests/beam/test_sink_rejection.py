"""Rows that pass the gate but BigQuery refuses: through the load transform on the
DirectRunner into the BigQuery emulator, every one lands in `quotes_dead_letter` with
BigQuery's own reason, and every input is in exactly one of the two tables."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial

import apache_beam as beam
import pytest

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.beam.load import LoadQuotes
from quotestream.beam.messages import RawMessage
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import QUOTE_BARS_1M, QUOTES, QUOTES_DEAD_LETTER, Column, TableSpec
from tests.support.corpus import bad_messages
from tests.support.local_runs import fresh_warehouse
from tests.support.pipelines import direct_pipeline

pytestmark = pytest.mark.integration

# `quotes` as someone might change it by hand under a running pipeline: a REQUIRED column
# the pipeline does not write. (The emulator enforces REQUIRED; it ignores STRING(n) and
# NUMERIC(p, s) limits, and the gate already keeps prices and times inside NUMERIC and
# TIMESTAMP, so a stricter schema is what makes BigQuery refuse a gated quote.)
STRICTER_QUOTES = TableSpec(
    QUOTES.name,
    QUOTES.description,
    (*QUOTES.columns, Column("desk", "STRING", "REQUIRED")),
    QUOTES.partition_column,
    QUOTES.clustering,
)


def test_rows_the_emulator_refuses_are_dead_lettered_with_its_reason(
    bigquery_emulator: ServiceProcess,
) -> None:
    settings, warehouse = fresh_warehouse(
        "reject", (STRICTER_QUOTES, QUOTES_DEAD_LETTER, QUOTE_BARS_1M)
    )

    now = now_ms()
    market = MarketSimulator(5, PAIR_CATALOG)
    good = [
        RawMessage(quote.to_json(), quote.pubsub_attributes(), f"good-{i}")
        for i, (_, quote) in enumerate(
            market.quotes_between(PAIR_CATALOG["USD-BRL"], now - 40_000, now - 20_000)
        )
    ]
    bad = [
        (message._replace(message_id=f"bad-{i}"), reason)
        for i, (message, reason) in enumerate(bad_messages(now))
    ]
    with direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(good + [message for message, _ in bad])
            | LoadQuotes(
                partial(bootstrap.build_table_writer, settings),
                partial(bootstrap.build_stored_row_lookups, settings),
            )
        )

    assert warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"] == 0
    dead = warehouse.query(
        "SELECT message_id, reason, error, stage, payload FROM {dataset}.quotes_dead_letter"
    )
    refused = [row for row in dead if row["stage"] == "bigquery_insert"]
    # Every gated quote is there once, as the row BigQuery refused, with BigQuery's words.
    assert sorted(row["message_id"] for row in refused) == sorted(
        f"quotes:{message.attributes['event_id']}" for message in good
    )
    assert {row["reason"] for row in refused} == {"bigquery_rejected"}
    for row in refused:
        assert "Missing required field: desk" in row["error"], row["error"]
        assert json.loads(row["payload"])["event_id"] == row["message_id"].split(":", 1)[1]
    gated = [row for row in dead if row["stage"] == "parse"]
    assert Counter(row["reason"] for row in gated) == Counter(reason for _, reason in bad)
    assert len(dead) == len(good) + len(bad), "an input is missing or counted twice"
    # The bars table is as provisioned: its rows went in.
    assert warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quote_bars_1m")[0]["n"] > 0
