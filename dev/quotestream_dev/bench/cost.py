"""`quotestream bench cost`: the CPU a quote costs in the load's transforms, as Dataflow would
bill it, beside the plain loop's.

The load's transforms (LoadQuotes: gate, quote rows, bars, dead letters, writers) run in batch
mode over a fixed corpus on Beam's FnApiRunner, in this process: the portable runner that fuses
steps into stages as Dataflow does. The warehouse only counts what reaches it, so the figure is
the transforms' own CPU, without the BigQuery client's. The plain loop does the least a correct
consumer does to the same corpus: gate, row, dead-letter row. Each cost is marginal (the CPU of
the whole corpus less that of a tenth of it, per quote, the least of REPEATS runs each, after a
run that warms up; more rounds when a busy machine blurs the difference), so the pipeline's
start-up is not in it.

Then what BigQuery bills to ingest a million quote rows of the corpus's mean size, with each
writer the load can use: legacy streaming inserts (insertAll, what the adapter calls today) and
the Storage Write API, at Google's list prices below.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, cast

from quotestream.beam.messages import RawMessage
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from quotestream.ports import Warehouse
from quotestream.ports.queries import BarPaneKey, StoredBar, StoredRowLookups
from quotestream.ports.writes import TableWriter
from quotestream_dev.bench.drain import Backlog, backlog_of

# Runs of each corpus, of which the least CPU counts: others running on the machine only add.
REPEATS = 2
# Rounds of REPEATS runs each, until the whole corpus costs more than its tenth.
MAX_ROUNDS = 5
# The quote rates the vCPU estimate is printed for.
RATES = (1_000, 10_000, 100_000)

# BigQuery's ingest list prices, from the "Data ingestion pricing" table of Google's BigQuery
# pricing page, checked 2026-12-07. They change, and vary by location: check the page before
# quoting the figures. Its MiB, GiB and TiB are binary, and so is the KB taken here.
PRICING_URL = "https://cloud.google.com/bigquery/pricing#data_ingestion_pricing"
PRICES_CHECKED = "2026-12-07"
# Streaming inserts (tabledata.insertAll): "$0.01 per 200 MiB"; "Individual rows are
# calculated using a 1 KB minimum", so a row smaller than that is billed as 1 KB.
INSERT_ALL_USD_PER_200_MIB = 0.01
INSERT_ALL_MIN_ROW_BYTES = 1024
# The Storage Write API: "$0.025 per 1 GiB. The first 2 TiB per month are free."
STORAGE_WRITE_USD_PER_GIB = 0.025
STORAGE_WRITE_FREE_TIB_A_MONTH = 2
MIB, GIB, TIB = 2**20, 2**30, 2**40
MILLION = 1_000_000  # the ingest cost is per million quotes
MONTH_S = 30 * 24 * 3600  # a 30-day month, to put the free tier in quotes/s


class CountingWarehouse:
    """Keeps the row ids it is given, per table: enough to check that every quote and dead
    letter arrived."""

    def __init__(self) -> None:
        self.row_ids: dict[str, set[str]] = {}

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], row_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        self.row_ids.setdefault(table, set()).update(row_ids or ())
        return []

    def close(self) -> None:
        pass


class NothingStored:
    """The writer's and the source's lookups, answered: nothing stored yet."""

    def stored_quote_ids(self, event_times: Mapping[str, datetime]) -> set[str]:
        return set()

    def stored_dead_letter_ids(self, row_ids: Collection[str]) -> set[str]:
        return set()

    def stored_bar_panes(self, panes: Collection[BarPaneKey]) -> set[BarPaneKey]:
        return set()

    def stored_bars(self, pair: str, start_ms: int, end_ms: int) -> dict[int, StoredBar]:
        return {}

    def close(self) -> None:
        pass


# By run: the pipeline's DoFns are pickled, and meet their corpus and warehouse here (a
# corpus given to beam.Create would be pickled into the pipeline, and that counted).
_CORPORA: dict[str, list[RawMessage]] = {}
_WAREHOUSES: dict[str, CountingWarehouse] = {}


def _corpus(run: str) -> list[RawMessage]:
    return _CORPORA.pop(run)


def _warehouse(run: str) -> Warehouse:
    return cast(Warehouse, _WAREHOUSES.setdefault(run, CountingWarehouse()))


def _nothing_stored() -> StoredRowLookups:
    return cast(StoredRowLookups, NothingStored())


def run(count: int) -> int:
    backlog = backlog_of(count)
    small = backlog_of(max(count // 10, 1))
    print(
        f"bench cost: CPU per quote over {count:,} messages ({backlog.poison_count:,} the gate "
        f"refuses), marginal over {len(small.messages):,}, one process, no I/O"
    )
    costs = {
        name: _marginal_cpu(consume, small, backlog)
        for name, consume in (("plain loop", _plain_loop), ("load transforms", _load_transforms))
    }
    print(f"\n  {'consumer':<28} {'CPU us/quote':>12} {'quotes/s a vCPU':>16}")
    for name, cost in costs.items():
        print(
            f"  {name + ' (FnApiRunner)' * (name != 'plain loop'):<28} "
            f"{cost * 1e6:>12,.1f} {1 / cost:>16,.0f}"
        )
    per_quote = costs["load transforms"]
    print(f"  load transforms / plain loop: {per_quote / costs['plain loop']:.2f}x")
    print("\n  vCPUs the load's transforms need (busy at 100 %; add headroom and the clients'):")
    for rate in RATES:
        print(f"  {rate:>9,} quotes/s   {rate * per_quote:6.2f} vCPU")
    print_ingest_cost(backlog)
    return 0


def quote_row_bytes(corpus: Backlog) -> float:
    """Mean size of the corpus's quote rows, built as the load builds them (the gate, then
    quote_row), as compact UTF-8 JSON: the form the adapter hands to insertAll."""
    from quotestream_dev.bench.plain_loop import gated_rows

    rows, _ = gated_rows(
        (data, attributes, f"m{index}") for index, (data, attributes) in enumerate(corpus.messages)
    )
    return sum(len(json.dumps(row, separators=(",", ":")).encode()) for row in rows) / len(rows)


def insert_all_usd(row_bytes: float) -> float:
    """USD per million quotes with legacy streaming inserts: each row billed at least 1 KB."""
    billed = max(row_bytes, INSERT_ALL_MIN_ROW_BYTES)
    return MILLION * billed / (200 * MIB) * INSERT_ALL_USD_PER_200_MIB


def storage_write_usd(row_bytes: float) -> float:
    """USD per million quotes with the Storage Write API, past its monthly free tier."""
    return MILLION * row_bytes / GIB * STORAGE_WRITE_USD_PER_GIB


def print_ingest_cost(corpus: Backlog) -> None:
    row_bytes = quote_row_bytes(corpus)
    free_quotes = STORAGE_WRITE_FREE_TIB_A_MONTH * TIB / row_bytes
    print(
        f"\n  BigQuery ingest, USD per million quotes (a quote row: {row_bytes:,.0f} bytes as "
        f"JSON, the mean of {len(corpus.quote_ids):,}):"
    )
    print(
        f"  {'legacy streaming inserts (insertAll)':<38} {insert_all_usd(row_bytes):>8.4f}   "
        f"${INSERT_ALL_USD_PER_200_MIB} per 200 MiB, each row billed as at least "
        f"{INSERT_ALL_MIN_ROW_BYTES // 1024} KB"
    )
    print(
        f"  {'Storage Write API':<38} {storage_write_usd(row_bytes):>8.4f}   "
        f"${STORAGE_WRITE_USD_PER_GIB} per GiB"
    )
    print(
        f"  the Storage Write API's first {STORAGE_WRITE_FREE_TIB_A_MONTH} TiB a month are free: "
        f"about {free_quotes / 1e9:,.1f} billion quotes, {free_quotes / MONTH_S:,.0f} quotes/s "
        "all month"
    )
    print(f"  prices: {PRICING_URL} (list prices, checked {PRICES_CHECKED}; they vary by location)")


def _marginal_cpu(
    consume: Callable[[Backlog, str], CountingWarehouse], small: Backlog, whole: Backlog
) -> float:
    """CPU seconds a quote adds. A busy machine can make a tenth of the corpus cost more than
    the whole of it: more rounds lower each corpus's least, until the difference is a cost."""
    _cpu_seconds(consume, small)  # warms up: the first pipeline pays the runner's imports
    least = {len(corpus.messages): float("inf") for corpus in (small, whole)}
    for _ in range(MAX_ROUNDS):
        for corpus in (small, whole):
            for _ in range(REPEATS):
                spent = _cpu_seconds(consume, corpus)
                least[len(corpus.messages)] = min(least[len(corpus.messages)], spent)
        added = least[len(whole.messages)] - least[len(small.messages)]
        if added > 0:
            return added / (len(whole.messages) - len(small.messages))
    raise RuntimeError(
        f"{len(whole.messages):,} messages cost no more CPU than {len(small.messages):,} in "
        f"{MAX_ROUNDS} rounds: the machine is too busy to measure; run with a larger count"
    )


def _cpu_seconds(consume: Callable[[Backlog, str], CountingWarehouse], corpus: Backlog) -> float:
    run = f"run-{time.monotonic_ns()}"
    started = time.process_time()
    warehouse = consume(corpus, run)
    spent = time.process_time() - started
    stored = warehouse.row_ids
    quotes, dead = len(stored.get(QUOTES.name, ())), len(stored.get(QUOTES_DEAD_LETTER.name, ()))
    if (quotes, dead) != (len(corpus.quote_ids), corpus.poison_count):
        raise RuntimeError(
            f"{quotes} quote rows and {dead} dead letters stored, expected "
            f"{len(corpus.quote_ids)} and {corpus.poison_count}"
        )
    return spent


def _plain_loop(corpus: Backlog, run: str) -> CountingWarehouse:
    from quotestream.domain.rows import dead_letter_row_id
    from quotestream_dev.bench.plain_loop import gated_rows

    warehouse = _WAREHOUSES.setdefault(run, CountingWarehouse())
    quotes, dead_letters = gated_rows(
        (data, attributes, f"m{index}") for index, (data, attributes) in enumerate(corpus.messages)
    )
    warehouse.insert_rows(QUOTES.name, quotes, [row["event_id"] for row in quotes])
    warehouse.insert_rows(
        QUOTES_DEAD_LETTER.name, dead_letters, [dead_letter_row_id(row) for row in dead_letters]
    )
    return warehouse


def _writer(run: str) -> TableWriter:
    from quotestream.adapters.gcp.bigquery_write import InsertAllTableWriter

    return InsertAllTableWriter(_warehouse(run))


def _load_transforms(corpus: Backlog, run: str) -> CountingWarehouse:
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    from quotestream.beam.load import LoadQuotes

    _CORPORA[run] = [
        RawMessage(data, attributes, f"m{index}")
        for index, (data, attributes) in enumerate(corpus.messages)
    ]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | "Run" >> beam.Create([run])
            | "Corpus" >> beam.FlatMap(_corpus)
            | "LoadQuotes" >> LoadQuotes(partial(_writer, run), _nothing_stored)
        )
    return _WAREHOUSES[run]
