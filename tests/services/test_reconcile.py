"""Every published message is matched to exactly one table, or reported as unaccounted."""

from __future__ import annotations

import pytest

from quotestream.domain.ledger import LoadedQuote, PublishedMessage
from quotestream.domain.rows import refused_row_id
from quotestream.services.accounting import latencies, reconcile

pytestmark = pytest.mark.unit


def message(message_id: str, event_id: str | None, publish_ms: int = 1_000) -> PublishedMessage:
    return PublishedMessage(message_id, event_id, 900 if event_id else None, publish_ms)


def row(event_id: str, ingest_ms: int = 1_500) -> LoadedQuote:
    return LoadedQuote(event_id, "USD-BRL", 900, ingest_ms)


def test_each_message_is_found_in_one_table_or_reported() -> None:
    published = [
        message("1", "q1"),
        message("2", "q2"),
        message("3", None),  # malformed: only its dead letter can account for it
        message("4", "q4"),  # a quote BigQuery refused: its dead letter names the row
        message("5", "q5"),  # in flight, or lost
        message("6", "q1"),  # the same quote published twice: one row serves both
    ]
    dead_letters = {"3": "malformed_json", refused_row_id("quotes", "q4"): "bigquery_rejected"}

    accounting = reconcile(published, [row("q1"), row("q2")], dead_letters)

    assert (accounting.published, accounting.loaded, accounting.dead_lettered) == (6, 3, 2)
    assert [m.message_id for m in accounting.unaccounted] == ["5"]
    assert accounting.dead_letter_reasons == {"malformed_json": 1, "bigquery_rejected": 1}
    assert not accounting.complete


def test_a_quote_stored_twice_is_a_duplicate_even_when_nothing_is_missing() -> None:
    accounting = reconcile([message("1", "q1")], [row("q1"), row("q1")], {})
    assert accounting.unaccounted == ()
    assert accounting.duplicate_rows == 1
    assert not accounting.complete


def test_a_dead_letter_wins_over_a_row_with_the_same_event_id() -> None:
    # A crossed copy of a real quote carries that quote's event_id but was dead-lettered.
    accounting = reconcile(
        [message("1", "q1"), message("2", "q1")], [row("q1")], {"2": "crossed_market"}
    )
    assert (accounting.loaded, accounting.dead_lettered, accounting.complete) == (1, 1, True)


def test_latencies_from_the_tick_and_from_the_publish() -> None:
    assert latencies([message("1", "q1", publish_ms=1_000)], [row("q1", ingest_ms=1_500)]) == {
        "tick -> row": [0.6],
        "publish -> row": [0.5],
    }
