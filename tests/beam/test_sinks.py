"""How the quote writer looks up quotes old enough that BigQuery's insert-id dedup may have
forgotten their first insert: one lookup of a span of event time answers for the batches after
it for a while, and then forgets; inserts stay under BigQuery's request limit."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from unittest import mock

import apache_beam as beam
import pytest

from quotestream.beam.sinks import LOOKUP_SPAN_MS, LOOKUP_TRUSTED_MS, InsertRowsFn, WriteRows
from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import DEAD_LETTER_PAYLOAD_BYTES, dead_letter_row_id
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from tests.support.fakes import InMemoryQuoteQueries, InMemoryWarehouse
from tests.support.pipelines import direct_pipeline
from tests.support.rows import dead_letter_at, quote_at


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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


def writer(warehouse: InMemoryWarehouse, queries: InMemoryQuoteQueries) -> InsertRowsFn:
    fn = InsertRowsFn(QUOTES.name, lambda: warehouse, lambda row: row["event_id"], lambda: queries)
    fn.setup()
    return fn


def written(fn: InsertRowsFn, rows: list[dict[str, Any]]) -> list[Any]:
    return list(fn.process(rows))


def rows_from(start_ms: int, count: int, step_ms: int = 1_000) -> list[dict[str, Any]]:
    return [quote_at(start_ms + index * step_ms) for index in range(count)]


def test_one_lookup_answers_the_batches_of_its_span_and_copies_are_not_inserted() -> None:
    warehouse = RecordingWarehouse()
    queries = InMemoryQuoteQueries(warehouse)
    start = now_ms() - 3 * LOOKUP_SPAN_MS
    stored_before = rows_from(start, 5)
    warehouse.insert_rows(QUOTES.name, stored_before)
    fn = writer(warehouse, queries)

    backlog = rows_from(start, 120)
    for offset in range(0, len(backlog), 20):
        assert len(written(fn, backlog[offset : offset + 20])) == 20

    ids = [row["event_id"] for row in warehouse.rows(QUOTES.name)]
    assert sorted(ids) == sorted(row["event_id"] for row in backlog)
    assert len(queries.span_lookups) == 1
    assert queries.lookups == []
    # Copies of what this writer stored after its lookup are known without asking again,
    # and not sent to BigQuery again.
    inserts = len(warehouse.request_bytes)
    assert len(written(fn, backlog[30:60])) == 30
    assert len(warehouse.request_bytes) == inserts
    assert len(queries.span_lookups) == 1


def test_the_lookup_is_asked_again_once_it_no_longer_answers() -> None:
    warehouse = InMemoryWarehouse()
    queries = InMemoryQuoteQueries(warehouse)
    start = now_ms() - 3 * LOOKUP_SPAN_MS
    fn = writer(warehouse, queries)
    written(fn, rows_from(start, 10))
    # Another writer stores a quote of the same span after the lookup.
    late = quote_at(start + 20_000)
    warehouse.insert_rows(QUOTES.name, [late])

    later = now_ms() + LOOKUP_TRUSTED_MS
    with mock.patch("quotestream.beam.sinks.now_ms", return_value=later):
        assert written(fn, [late]) == [late]

    assert len(queries.span_lookups) == 2
    assert [row["event_id"] for row in warehouse.rows(QUOTES.name)].count(late["event_id"]) == 1


def test_what_the_writer_knows_is_forgotten_once_it_no_longer_answers() -> None:
    """A job that caught up on a backlog and then runs live keeps no ids of the live quotes."""
    warehouse = InMemoryWarehouse()
    fn = writer(warehouse, InMemoryQuoteQueries(warehouse))
    written(fn, rows_from(now_ms() - 3 * LOOKUP_SPAN_MS, 10))
    later = now_ms() + LOOKUP_TRUSTED_MS
    with mock.patch("quotestream.beam.sinks.now_ms", return_value=later):
        for batch in range(5):
            written(fn, rows_from(later - 1_000 - batch * 100, 100, step_ms=1))

    assert fn._known == []  # what it holds in memory is the point here
    assert len(warehouse.rows(QUOTES.name)) == 510


def test_a_batch_wider_than_a_span_asks_for_each_span_and_young_quotes_are_not_asked() -> None:
    warehouse = InMemoryWarehouse()
    queries = InMemoryQuoteQueries(warehouse)
    now = now_ms()
    wide = [quote_at(now - 3 * LOOKUP_SPAN_MS), quote_at(now - LOOKUP_SPAN_MS)]
    young = quote_at(now - 1_000)
    fn = writer(warehouse, queries)

    written(fn, [*wide, young])

    assert queries.lookups == []
    asked = [(to_ms(start), to_ms(end)) for start, end in queries.span_lookups]
    assert [start for start, _ in asked] == [to_ms(moment(row["event_ts"])) for row in wide]
    young_ms = to_ms(moment(young["event_ts"]))
    assert not any(start <= young_ms < end for start, end in asked)
    assert len(warehouse.rows(QUOTES.name)) == 3


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
