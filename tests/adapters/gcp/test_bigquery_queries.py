"""The SQL of the query ports (adapters/gcp/bigquery_queries.py) on the BigQuery emulator,
against the plain Python of their fakes: both answer every question alike, and as expected,
from the same rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from unittest import mock

import pytest

from quotestream.adapters.gcp import bigquery_queries
from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
from quotestream.adapters.gcp.bigquery_queries import (
    DEAD_LETTER_ROW_ID_SQL,
    BigQueryAccountingQueries,
    BigQueryBackfillWrites,
    BigQueryHealthQueries,
    BigQueryQualityQueries,
    BigQueryReplayQueries,
    BigQueryStoredRowLookups,
)
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.ledger import Bar, LoadedQuote
from quotestream.domain.quote import to_ms
from quotestream.domain.rows import dead_letter_row_id, refused_row_id
from quotestream.domain.schemas import QUOTES
from quotestream.ports import Warehouse
from quotestream.ports.queries import (
    BarPane,
    MinuteSummary,
    PairTicks,
    Progress,
    RecentFlow,
    ServedSpan,
    TickGapRule,
)
from tests.support.fakes import (
    InMemoryAccountingQueries,
    InMemoryBackfillWrites,
    InMemoryHealthQueries,
    InMemoryQualityQueries,
    InMemoryReplayQueries,
    InMemoryStoredRowLookups,
    InMemoryWarehouse,
)
from tests.support.local_runs import fresh_warehouse
from tests.support.rows import MINUTE_MS, bar_at, dead_letter_at, quote_at, unwritten

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
# Each query port's SQL and its fake.
PORTS = [
    (BigQueryQualityQueries, InMemoryQualityQueries),
    (BigQueryAccountingQueries, InMemoryAccountingQueries),
    (BigQueryReplayQueries, InMemoryReplayQueries),
    (BigQueryHealthQueries, InMemoryHealthQueries),
    (BigQueryStoredRowLookups, InMemoryStoredRowLookups),
    (BigQueryBackfillWrites, InMemoryBackfillWrites),
]


class EveryQuestion:
    """The query ports over one warehouse, asked as one: a question goes to the port asking it."""

    def __init__(self, ports: list[Any]) -> None:
        self._ports = ports

    def __getattr__(self, question: str) -> Any:
        return next(getattr(port, question) for port in self._ports if hasattr(port, question))


@dataclass
class Stores:
    """An emulator dataset and an in-memory warehouse holding the same rows."""

    warehouse: Warehouse
    memory: InMemoryWarehouse

    @property
    def bigquery(self) -> Any:
        warehouse = cast(BigQueryWarehouse, self.warehouse)
        return EveryQuestion([sql(warehouse) for sql, _ in PORTS])

    @property
    def fake(self) -> Any:
        return EveryQuestion([fake(self.memory) for _, fake in PORTS])

    def insert(self, table: str, rows: list[dict[str, Any]], row_ids: list[str]) -> None:
        assert self.warehouse.insert_rows(table, rows, row_ids) == []
        assert self.memory.insert_rows(table, rows, row_ids) == []


def fresh_stores() -> Stores:
    _, warehouse = fresh_warehouse("queries")
    return Stores(warehouse, InMemoryWarehouse())


@pytest.fixture
def stores(bigquery_emulator: ServiceProcess) -> Stores:
    return fresh_stores()


# The minute the questions ask about: recent, as the streaming load writes.
T = to_ms(datetime.now(UTC).replace(second=0, microsecond=0)) - 30 * MINUTE_MS
START, END = (datetime.fromtimestamp(ms / 1000, UTC) for ms in (T, T + MINUTE_MS))

Q1 = quote_at(T + 1_000)
Q2 = quote_at(T + 2_000)
Q3 = quote_at(T + 3_000, pair="EUR-BRL")
Q3_CROSSED = {**Q3, "bid": "9.9999", "ask": "1.0000"}  # a second row of Q3's event id
Q4_UNWRITTEN = unwritten(quote_at(T + 5_000))
Q5_AT_THE_END = quote_at(T + MINUTE_MS)
Q6_A_DAY_OLD = quote_at(T - DAY_MS - MINUTE_MS, ingest_ms=T + 10_000, pair="EUR-BRL")
D1 = dead_letter_at(T + 10_000, "m1")
D2_ANONYMOUS = dead_letter_at(T + 20_000)
D3_REFUSED = {
    **dead_letter_at(T + 70_000, refused_row_id("quotes", Q5_AT_THE_END["event_id"])),
    "reason": "bigquery_rejected",
    "stage": "bigquery_insert",
}
DEAD_LETTERS = [D1, D2_ANONYMOUS, D3_REFUSED]


def loaded(row: dict[str, Any]) -> LoadedQuote:
    return LoadedQuote(
        row["event_id"],
        row["pair"],
        to_ms(moment(row["event_ts"])),
        to_ms(moment(row["ingest_ts"])),
    )


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def filled(bigquery_emulator: ServiceProcess) -> Stores:
    stores = fresh_stores()
    quotes = [Q1, Q2, Q3, Q3_CROSSED, Q4_UNWRITTEN, Q5_AT_THE_END, Q6_A_DAY_OLD]
    stores.insert("quotes", quotes, [f"quote-{n}" for n in range(len(quotes))])
    stores.insert("quotes_dead_letter", DEAD_LETTERS, [dead_letter_row_id(d) for d in DEAD_LETTERS])
    bars = [
        bar_at(T, 0, "5.36"),
        bar_at(T, 1, "5.37"),
        bar_at(T, None, "5.35", pair="EUR-BRL"),
        bar_at(T - 2 * MINUTE_MS, 0, "5.30"),  # its window ended before T
    ]
    stores.insert("quote_bars_1m", bars, [f"bar-{n}" for n in range(len(bars))])
    return stores


def bar(pair: str, close: float, ticks: int) -> Bar:
    return Bar(pair, T, 5.35, 5.36, 5.34, close, ticks)


def id_of(row: dict[str, Any]) -> str:
    return str(row["event_id"])


QUESTIONS: list[tuple[str, Callable[[Any], Any], Any]] = [
    (
        "distinct quotes per pair of the minute",
        lambda q: q.distinct_quotes_per_pair(START, END),
        {"USD-BRL": 3, "EUR-BRL": 1},
    ),
    ("crossed quotes", lambda q: q.crossed_quotes(START, END), 1),
    ("duplicate rows", lambda q: q.duplicate_quote_rows(START, END), 1),
    ("rows with nulls", lambda q: q.quotes_with_nulls(START, END), 1),
    ("quotes written in the minute", lambda q: q.quotes_ingested(START, END), 5),
    ("dead letters received in the minute", lambda q: q.dead_letters_received(START, END), 2),
    ("newest event", lambda q: q.newest_event_ms(), T + MINUTE_MS),
    ("progress", lambda q: q.progress_since(T + 3_000), Progress(5, 3, T + MINUTE_MS)),
    (
        "loaded quotes",
        lambda q: sorted(q.loaded_quotes_since(T + 4_000), key=repr),
        sorted(map(loaded, [Q3, Q3_CROSSED, Q5_AT_THE_END, Q6_A_DAY_OLD]), key=repr),
    ),
    (
        "bar panes",
        lambda q: sorted(q.bar_panes_since(T), key=repr),
        sorted(
            [
                BarPane(bar("USD-BRL", 5.36, 3), 0),
                BarPane(bar("USD-BRL", 5.37, 4), 1),
                BarPane(bar("EUR-BRL", 5.35, 3), 0),
            ],
            key=repr,
        ),
    ),
    (
        # The final pane of each bar starting in the span: pane 1 over pane 0, a NULL index 0.
        "final bars",
        lambda q: sorted(q.final_bars(START - timedelta(minutes=2), END), key=repr),
        sorted(
            [
                bar("USD-BRL", 5.37, 4),
                bar("EUR-BRL", 5.35, 3),
                Bar("USD-BRL", T - 2 * MINUTE_MS, 5.35, 5.36, 5.34, 5.30, 3),
            ],
            key=repr,
        ),
    ),
    (
        "dead-letter reasons",
        lambda q: q.dead_letter_reasons_since(T),
        {"m1": "malformed_json", D3_REFUSED["message_id"]: "bigquery_rejected"},
    ),
    (
        "recent flow",
        lambda q: q.recent_flow(T + 3_000, T - DAY_MS),
        RecentFlow(T + MINUTE_MS, 4, 3),
    ),
    (
        "stored quote ids",
        lambda q: q.stored_quote_ids({id_of(Q1): moment(Q1["event_ts"]), "absent": START}),
        {id_of(Q1)},
    ),
    (
        # The times bound the partitions read: a time a day off finds nothing.
        "stored quote ids, a day off",
        lambda q: q.stored_quote_ids({id_of(Q1): moment(Q1["event_ts"]) + timedelta(days=1)}),
        set(),
    ),
    (
        # Days apart, each found on its own day.
        "stored quote ids, days apart",
        lambda q: q.stored_quote_ids(
            {
                id_of(Q1): moment(Q1["event_ts"]),
                id_of(Q6_A_DAY_OLD): moment(Q6_A_DAY_OLD["event_ts"]),
            }
        ),
        {id_of(Q1), id_of(Q6_A_DAY_OLD)},
    ),
    (
        # Only the days of the times asked are read: Q6 is stored between them, on another.
        "stored quote ids, only on the days asked",
        lambda q: q.stored_quote_ids(
            {
                id_of(Q1): moment(Q1["event_ts"]),
                id_of(Q6_A_DAY_OLD): moment(Q1["event_ts"]),
                "absent": START - timedelta(days=3),
            }
        ),
        {id_of(Q1)},
    ),
    (
        # More ids than one lookup takes, spread over a month, in chunks of their own times.
        "stored quote ids, many",
        lambda q: q.stored_quote_ids(
            {
                **{f"absent-{n}": START - timedelta(minutes=17 * n) for n in range(2_500)},
                id_of(Q1): moment(Q1["event_ts"]),
                id_of(Q3): moment(Q3["event_ts"]),
                id_of(Q6_A_DAY_OLD): moment(Q6_A_DAY_OLD["event_ts"]),
            }
        ),
        {id_of(Q1), id_of(Q3), id_of(Q6_A_DAY_OLD)},
    ),
    (
        # A dead letter without a message id has no row id in SQL: it is never found.
        "stored dead-letter ids",
        lambda q: q.stored_dead_letter_ids([*map(dead_letter_row_id, DEAD_LETTERS), "parse:no"]),
        {dead_letter_row_id(D1), dead_letter_row_id(D3_REFUSED)},
    ),
]


@pytest.mark.parametrize(
    ("ask", "expected"),
    [(ask, expected) for _, ask, expected in QUESTIONS],
    ids=[q[0] for q in QUESTIONS],
)
def test_bigquery_and_the_fake_answer_alike_and_rightly(
    filled: Stores, ask: Callable[[Any], Any], expected: Any
) -> None:
    assert ask(filled.bigquery) == expected
    assert ask(filled.fake) == expected


def test_the_dead_letter_row_id_is_the_same_in_sql_as_in_python(filled: Stores) -> None:
    rows = filled.warehouse.query(
        f"SELECT message_id, {DEAD_LETTER_ROW_ID_SQL} AS row_id FROM {{dataset}}.quotes_dead_letter"
    )
    by_message = {row["message_id"]: row["row_id"] for row in rows}
    assert by_message == {
        D1["message_id"]: dead_letter_row_id(D1),
        D3_REFUSED["message_id"]: dead_letter_row_id(D3_REFUSED),
        # Python digests the content of a row without a message id; SQL has no id for it.
        None: None,
    }


def test_only_the_quotes_missing_from_the_interval_are_inserted(stores: Stores) -> None:
    present, missing = quote_at(T + 1_000), quote_at(T + 2_000)
    after = quote_at(T + MINUTE_MS + 1_000)
    stores.insert("quotes", [present], [id_of(present)])
    for warehouse in (stores.warehouse, stores.memory):
        warehouse.create_scratch_table("scratch", QUOTES)
        warehouse.load_rows("scratch", QUOTES, [present, missing, after])

    assert stores.bigquery.insert_missing_quotes("scratch", START, END) == 1
    assert stores.fake.insert_missing_quotes("scratch", START, END) == 1
    every = {id_of(row): moment(row["event_ts"]) for row in (present, missing, after)}
    assert stores.bigquery.stored_quote_ids(every) == {id_of(present), id_of(missing)}
    assert stores.fake.stored_quote_ids(every) == {id_of(present), id_of(missing)}


def test_the_market_questions_of_a_short_series_are_answered_alike(stores: Stores) -> None:
    asks = ["5.3510", "5.3512", "5.3511", "5.3513", "5.3610"]
    seconds = [0, 1, 2, 3, 7]  # a gap of four intervals before the last: three ticks missing
    series = [
        quote_at(T + s * 1_000, bid=f"{Decimal(ask) - Decimal('0.001')}", ask=ask)
        for s, ask in zip(seconds, asks, strict=True)
    ]
    rewritten = {**series[1], "ingest_ts": series[2]["ingest_ts"], "mid": "9.99995"}
    other = quote_at(T + 30_000, pair="EUR-BRL")
    rows = [*series, rewritten, other]
    stores.insert("quotes", rows, [f"row-{n}" for n in range(len(rows))])
    intervals = {"USD-BRL": 1_000, "EUR-BRL": 2_000}

    for queries in (stores.bigquery, stores.fake):
        ticks = queries.pair_ticks(START, END, TickGapRule(intervals, 1.5, "test", 60_000))
        # The second row of an event id is left out: the first written counts.
        assert ticks["USD-BRL"] == PairTicks("USD-BRL", 5, T + 7_000, 1, 3, 4_000, T + 7_000, 0)
        assert ticks["EUR-BRL"] == PairTicks("EUR-BRL", 1, T + 30_000, 0, 0, 0, None, 0)
        mids = [float(row["mid"]) for row in series]
        usd_brl = next(s for s in queries.minute_summaries(START, END) if s.bar.pair == "USD-BRL")
        assert usd_brl == MinuteSummary(
            Bar("USD-BRL", T, mids[0], max(mids), min(mids), mids[-1], 5), 0.001
        )
        (moves,) = [m for m in queries.mid_moves(START, END) if m.pair == "USD-BRL"]
        assert (moves.moves, moves.largest_at_ms, moves.lowest_mid) == (4, T + 7_000, min(mids))
        assert moves.largest_deviation > 10 * moves.mad > 0
    assert stores.bigquery.mid_moves(START, END) == pytest.approx(stores.fake.mid_moves(START, END))


def test_the_spans_another_source_served_are_found_alike(stores: Stores) -> None:
    """USD-BRL: OANDA from the minute's start, the API's, a run of OANDA's (one quote written
    twice), the API's, OANDA to the minute's end; EUR-BRL: the API's only; EUR-USD: OANDA's only."""
    sources = [("oanda", 1), ("test", 3), ("oanda", 2), ("test", 2), ("oanda", 1)]
    usd_brl, second = [], 0
    for source, ticks in sources:
        for _ in range(ticks):
            usd_brl.append(quote_at(T + second * 1_000, source=source))
            second += 1
    rows = [
        *usd_brl,
        {**usd_brl[4], "ingest_ts": usd_brl[5]["ingest_ts"]},
        quote_at(T + 5_000, pair="EUR-BRL"),
        *(quote_at(T + s * 1_000, pair="EUR-USD", source="oanda") for s in (2, 4)),
        quote_at(T + MINUTE_MS, source="oanda"),  # after the minute
    ]
    stores.insert("quotes", rows, [f"row-{n}" for n in range(len(rows))])

    expected = {
        "USD-BRL": [
            ServedSpan(None, T + 1_000, 1),
            ServedSpan(T + 3_000, T + 6_000, 2),
            ServedSpan(T + 7_000, None, 1),
        ],
        "EUR-USD": [ServedSpan(None, None, 2)],
    }
    assert stores.bigquery.served_elsewhere(START, END, "test") == expected
    assert stores.fake.served_elsewhere(START, END, "test") == expected


def test_a_gap_by_another_source_is_judged_as_a_feeds_and_misses_no_tick(stores: Stores) -> None:
    """The API's ticks at 0, 1 and 2 s, OANDA's at 2.3, 10 and 50 s, the API's at 52 and 55 s:
    only the gap from 52 to 55 s misses ticks (two); of the feed's, the 40 s one is too long."""
    rows = [
        *(quote_at(T + ms) for ms in (0, 1_000, 2_000, 52_000, 55_000)),
        *(quote_at(T + ms, source="oanda") for ms in (2_300, 10_000, 50_000)),
    ]
    stores.insert("quotes", rows, [f"row-{n}" for n in range(len(rows))])
    rule = TickGapRule({"USD-BRL": 1_000}, 1.5, "test", 30_000)

    expected = PairTicks("USD-BRL", 8, T + 55_000, 1, 2, 40_000, T + 50_000, 1)
    assert stores.bigquery.pair_ticks(START, END, rule) == {"USD-BRL": expected}
    assert stores.fake.pair_ticks(START, END, rule) == {"USD-BRL": expected}


@pytest.mark.parametrize(
    ("ids_per_lookup", "days_per_lookup", "lookups"), [(1_000, 1_000, 3), (10_000, 7, 5)]
)
def test_a_lookup_of_quotes_is_split_by_ids_and_by_days_and_finds_the_same(
    filled: Stores, ids_per_lookup: int, days_per_lookup: int, lookups: int
) -> None:
    """2,503 ids over a month (30 or 31 days): in lookups of at most so many ids, and of at
    most so many days."""
    asked = {
        **{f"absent-{n}": START - timedelta(minutes=17 * n) for n in range(2_500)},
        id_of(Q1): moment(Q1["event_ts"]),
        id_of(Q3): moment(Q3["event_ts"]),
        id_of(Q6_A_DAY_OLD): moment(Q6_A_DAY_OLD["event_ts"]),
    }
    warehouse = cast(BigQueryWarehouse, filled.warehouse)
    with (
        mock.patch.object(bigquery_queries, "_IDS_PER_LOOKUP", ids_per_lookup),
        mock.patch.object(bigquery_queries, "_DAYS_PER_LOOKUP", days_per_lookup),
        mock.patch.object(warehouse, "query", wraps=warehouse.query) as query,
    ):
        found = BigQueryStoredRowLookups(warehouse).stored_quote_ids(asked)

    assert found == {id_of(Q1), id_of(Q3), id_of(Q6_A_DAY_OLD)}
    assert query.call_count == lookups
