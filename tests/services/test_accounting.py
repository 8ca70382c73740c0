"""A run's accounting over the in-memory fakes: what the warehouse holds since the run began,
each published message found in one table, the final pane of each bar."""

from __future__ import annotations

import pytest

from quotestream.domain.ledger import Bar, LoadedQuote, PublishedMessage
from quotestream.domain.rows import dead_letter_row_id, refused_row_id
from quotestream.ports.queries import Progress
from quotestream.services.accounting import AccountingService
from tests.support.fakes import (
    InMemoryAccountingQueries,
    InMemoryStoredRowLookups,
    InMemoryWarehouse,
)
from tests.support.rows import MINUTE_MS, bar_at, dead_letter_at, quote_at

pytestmark = pytest.mark.unit

RUN_START_MS = 1_795_000_020_000


def stored(warehouse: InMemoryWarehouse, table: str, rows: list[dict[str, object]]) -> None:
    warehouse.insert_rows(table, rows, [f"{table}-{n}" for n in range(len(rows))])


def accountant(warehouse: InMemoryWarehouse) -> AccountingService:
    return AccountingService(InMemoryAccountingQueries(warehouse), RUN_START_MS)


def test_a_quote_published_again_whose_row_is_from_before_the_run_is_stored_not_lost() -> None:
    """A relaunched extract fetches again what a previous job had stored (its overlap)."""
    warehouse = InMemoryWarehouse()
    earlier, lost = quote_at(RUN_START_MS - 30_000), quote_at(RUN_START_MS - 20_000)
    stored(warehouse, "quotes", [earlier])
    published = [
        PublishedMessage("m1", earlier["event_id"], RUN_START_MS - 30_000, RUN_START_MS + 500),
        PublishedMessage("m2", lost["event_id"], RUN_START_MS - 20_000, RUN_START_MS + 600),
    ]
    lookups = InMemoryStoredRowLookups(warehouse)
    service = AccountingService(InMemoryAccountingQueries(warehouse), RUN_START_MS, lookups)

    accounting = service.account(published)

    assert (accounting.loaded, accounting.duplicate_rows) == (1, 0)
    assert [message.message_id for message in accounting.unaccounted] == ["m2"]
    assert lookups.lookups == [[earlier["event_id"], lost["event_id"]]]
    # Without the earlier rows, the same run would count the first as lost.
    assert len(accountant(warehouse).account(published).unaccounted) == 2


def test_progress_counts_only_what_was_written_since_the_run_began() -> None:
    warehouse = InMemoryWarehouse()
    before, first, newest = RUN_START_MS - 5_000, RUN_START_MS + 1_000, RUN_START_MS + 3_000
    stored(warehouse, "quotes", [quote_at(before), quote_at(first), quote_at(newest)])
    stored(warehouse, "quotes_dead_letter", [dead_letter_at(before), dead_letter_at(first)])
    assert accountant(warehouse).progress() == Progress(2, 1, newest)


def test_an_empty_run_has_no_newest_event() -> None:
    assert accountant(InMemoryWarehouse()).progress() == Progress(0, 0, None)


def test_every_message_is_found_in_the_table_that_holds_it() -> None:
    warehouse = InMemoryWarehouse()
    loaded, refused = quote_at(RUN_START_MS + 1_000), quote_at(RUN_START_MS + 2_000)
    stored(warehouse, "quotes", [loaded, quote_at(RUN_START_MS - 9_000)])
    malformed = dead_letter_at(RUN_START_MS + 1_500, "m2")
    rejected = dead_letter_at(
        RUN_START_MS + 2_500, refused_row_id("quotes", refused["event_id"]), "bigquery_rejected"
    )
    stored(warehouse, "quotes_dead_letter", [malformed, rejected])
    published = [
        PublishedMessage("m1", loaded["event_id"], RUN_START_MS + 1_000, RUN_START_MS + 1_000),
        PublishedMessage("m2", None, None, RUN_START_MS + 1_500),
        PublishedMessage("m3", refused["event_id"], RUN_START_MS + 2_000, RUN_START_MS + 2_000),
        PublishedMessage("m4", "lost", RUN_START_MS + 3_000, RUN_START_MS + 3_000),
    ]

    accounting = accountant(warehouse).account(published)

    assert (accounting.loaded, accounting.dead_lettered) == (1, 2)
    assert [message.message_id for message in accounting.unaccounted] == ["m4"]
    assert accounting.dead_letter_reasons == {"malformed_json": 1, "bigquery_rejected": 1}
    assert accountant(warehouse).loaded_quotes() == [
        LoadedQuote(loaded["event_id"], "USD-BRL", RUN_START_MS + 1_000, RUN_START_MS + 2_000)
    ]


def test_a_dead_letter_without_a_message_id_accounts_for_no_message() -> None:
    warehouse = InMemoryWarehouse()
    anonymous = dead_letter_at(RUN_START_MS + 1_000)
    warehouse.insert_rows("quotes_dead_letter", [anonymous], [dead_letter_row_id(anonymous)])
    assert accountant(warehouse).dead_letters() == {}


def test_each_bar_is_its_final_pane_in_pair_and_minute_order() -> None:
    warehouse = InMemoryWarehouse()
    minute = RUN_START_MS - RUN_START_MS % MINUTE_MS
    stored(
        warehouse,
        "quote_bars_1m",
        [
            bar_at(minute + MINUTE_MS, 0, "5.40"),
            bar_at(minute, 1, "5.37"),
            bar_at(minute, None, "5.35"),  # before pane_index was recorded: the first pane
            bar_at(minute, 0, "5.36", pair="EUR-BRL"),
            bar_at(minute - 2 * MINUTE_MS, 0, "5.30"),  # ended before the run began
        ],
    )
    bars = accountant(warehouse).bars()
    assert [(bar.pair, bar.window_start_ms, bar.close) for bar in bars] == [
        ("EUR-BRL", minute, 5.36),
        ("USD-BRL", minute, 5.37),
        ("USD-BRL", minute + MINUTE_MS, 5.40),
    ]
    assert bars[1] == Bar("USD-BRL", minute, 5.35, 5.36, 5.34, 5.37, 4)
