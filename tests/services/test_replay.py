"""Dead-letter replay over the in-memory fakes: what now parses joins `quotes` once, every
verdict is a row of dead_letter_replays, nothing is deleted, and a second run changes
nothing."""

from __future__ import annotations

import copy
import json

import pytest

from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import to_ms
from quotestream.domain.rows import dead_letter_row, dead_letter_row_id, quote_row
from quotestream.domain.schemas import DEAD_LETTER_REPLAYS, QUOTES, QUOTES_DEAD_LETTER
from quotestream.domain.validation import parse_quote
from quotestream.services.replay import DeadLetterReplayService, ReplayCounts
from tests.support.builders import quote_bytes
from tests.support.dead_letters import FIXED_PAIRS, DeadLetters
from tests.support.fakes import InMemoryReplayQueries, InMemoryStoredRowLookups, InMemoryWarehouse

pytestmark = pytest.mark.unit

REASONS = ("unknown_pair", "malformed_json")


def replay_service(warehouse: InMemoryWarehouse) -> DeadLetterReplayService:
    queries, lookups = InMemoryReplayQueries(warehouse), InMemoryStoredRowLookups(warehouse)
    return DeadLetterReplayService(queries, lookups, warehouse, FIXED_PAIRS)


def filled() -> tuple[DeadLetters, InMemoryWarehouse, DeadLetterReplayService]:
    letters = DeadLetters()
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows(QUOTES_DEAD_LETTER.name, letters.rows, letters.ids)
    warehouse.insert_rows(QUOTES.name, [letters.loaded_quote], [letters.loaded_quote["event_id"]])
    return letters, warehouse, replay_service(warehouse)


def test_a_dry_run_counts_and_writes_nothing() -> None:
    letters, warehouse, service = filled()
    before = copy.deepcopy(warehouse.tables)
    counts = service.run(letters.start, letters.end, REASONS, "dry", dry_run=True)
    assert counts == ReplayCounts(3, 1, 1, 1, 0, dry_run=True)
    assert str(counts).startswith("dry run, nothing written: 3 dead letters examined: 2 replayed")
    assert warehouse.tables == before


def test_what_parses_is_inserted_once_and_a_second_run_changes_nothing() -> None:
    letters, warehouse, service = filled()
    first = service.run(letters.start, letters.end, REASONS, "first", dry_run=False)
    assert first == ReplayCounts(3, 1, 1, 1, 0, dry_run=False)
    assert sorted(row["event_id"] for row in warehouse.rows(QUOTES.name)) == sorted(
        [letters.new_quote["event_id"], letters.loaded_quote["event_id"]]
    )
    marks = {row["dead_letter_id"]: row for row in warehouse.rows(DEAD_LETTER_REPLAYS.name)}
    btc, usd, bad, _ = letters.ids
    assert {
        key: (row["outcome"], row["event_id"], row["reason"]) for key, row in marks.items()
    } == {
        btc: ("replayed", letters.new_quote["event_id"], None),
        usd: ("replayed", letters.loaded_quote["event_id"], None),
        bad: ("still_failing", None, "malformed_json"),
    }
    assert len(warehouse.rows(QUOTES_DEAD_LETTER.name)) == len(letters.rows), "never deleted"

    after_first = copy.deepcopy(warehouse.tables)
    second = service.run(letters.start, letters.end, REASONS, "second", dry_run=False)
    assert second == ReplayCounts(3, 0, 0, 0, 3, dry_run=False)
    assert warehouse.tables == after_first


def test_every_reason_is_replayed_when_none_is_named_and_a_new_reason_is_recorded() -> None:
    letters, warehouse, service = filled()
    service.run(letters.start, letters.end, ["malformed_json"], "first", dry_run=False)
    counts = service.run(letters.start, letters.end, [], "all", dry_run=False)
    # The malformed one fails as before: unchanged; the undecodable bytes fail anew.
    assert counts == ReplayCounts(4, 1, 1, 1, 1, dry_run=False)
    verdicts = InMemoryReplayQueries(warehouse).replay_verdicts(letters.ids)
    assert verdicts[letters.ids[3]].reason == "bad_encoding"


def test_a_row_bigquery_refused_is_replayed_as_the_quote_it_was() -> None:
    """The writers keep a refused quotes row whole, with the ingest_ts they stamped; the
    gate's message is that row without it."""
    letters = DeadLetters()
    quote = parse_quote(
        json.dumps(letters.new_quote).encode(), {}, pairs={p: PAIR_CATALOG[p] for p in FIXED_PAIRS}
    )
    refused = dead_letter_row(
        json.dumps(quote_row(quote, to_ms(letters.received))).encode(),
        {"table": "quotes"},
        reason="bigquery_rejected",
        error="[]",
        stage="bigquery_insert",
        received_ts_ms=to_ms(letters.received),
        message_id="quotes:" + quote.event_id,
    )
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows(QUOTES_DEAD_LETTER.name, [refused], [dead_letter_row_id(refused)])
    service = replay_service(warehouse)
    counts = service.run(letters.start, letters.end, (), "r1", dry_run=False)
    assert (counts.inserted, counts.still_failing) == (1, 0)
    assert [row["event_id"] for row in warehouse.rows(QUOTES.name)] == [quote.event_id]


def test_quotes_the_live_load_found_too_old_are_replayed_into_quotes() -> None:
    """The live load's freshness horizon is not the gate's verdict on history: a quote a
    month old that it dead-lettered as too_old joins `quotes` on replay."""
    letters = DeadLetters()
    month_old_ms = to_ms(letters.received) - 30 * 86_400_000
    payload = quote_bytes(event_ts_ms=month_old_ms)
    too_old = dead_letter_row(
        payload,
        {},
        reason="too_old",
        error="beyond the live load's horizon",
        stage="parse",
        received_ts_ms=to_ms(letters.received),
        message_id="m-old",
    )
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows(QUOTES_DEAD_LETTER.name, [too_old], [dead_letter_row_id(too_old)])
    service = replay_service(warehouse)

    counts = service.run(letters.start, letters.end, ["too_old"], "old", dry_run=False)

    assert (counts.inserted, counts.still_failing) == (1, 0)
    assert [row["event_id"] for row in warehouse.rows(QUOTES.name)] == [
        json.loads(payload)["event_id"]
    ]
