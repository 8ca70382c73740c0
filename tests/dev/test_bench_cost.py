"""`quotestream bench cost` on a small corpus: the load's transforms on the FnApiRunner and the
plain loop each store every quote and dead letter once, and a CPU figure is printed; a run
that stores less is refused rather than measured. Then BigQuery's ingest cost per million
quotes with each writer, from the quote rows' size and Google's prices, with their source."""

from __future__ import annotations

import re

import pytest

from quotestream_dev.bench import cost
from quotestream_dev.bench.drain import backlog_of

pytestmark = pytest.mark.unit


def test_bench_cost_prints_the_cpu_per_quote_of_both_and_the_vcpus(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Large enough that the marginal cost outweighs what the parallel suite adds to a run.
    assert cost.run(3000) == 0
    output = capsys.readouterr().out
    assert re.search(r"plain loop\s+\d+\.\d\s+[\d,]+\n", output), output
    assert re.search(r"load transforms \(FnApiRunner\)\s+\d+\.\d\s+[\d,]+\n", output), output
    assert re.search(r"100,000 quotes/s\s+\d+\.\d\d vCPU", output), output
    assert cost.PRICING_URL in output, output


def test_a_run_that_stores_less_than_its_corpus_is_refused() -> None:
    def loses_the_dead_letters(corpus: cost.Backlog, run: str) -> cost.CountingWarehouse:
        warehouse = cost.CountingWarehouse()
        warehouse.insert_rows("quotes", [], sorted(corpus.quote_ids))
        return warehouse

    with pytest.raises(
        RuntimeError, match="594 quote rows and 0 dead letters stored, expected 594 and 6"
    ):
        cost._cpu_seconds(loses_the_dead_letters, backlog_of(600))


def test_insert_all_bills_a_quote_row_as_the_1_kb_minimum() -> None:
    # $0.01 per 200 MiB, each row counted as 1,024 bytes at least.
    assert cost.insert_all_usd(1024) == pytest.approx(1e6 * 1024 / (200 * 2**20) * 0.01)
    assert cost.insert_all_usd(1024) == pytest.approx(0.048828125)
    # A quote row is far below the minimum: its own size changes nothing...
    assert cost.insert_all_usd(100) == cost.insert_all_usd(258) == cost.insert_all_usd(1024)
    # ...and above it the row's size is billed.
    assert cost.insert_all_usd(2048) == pytest.approx(2 * cost.insert_all_usd(1024))


def test_storage_write_bills_the_bytes_and_is_cheaper_by_the_expected_ratio() -> None:
    # $0.025 per GiB, no minimum: proportional to the row's size.
    assert cost.storage_write_usd(2**30 / 1e6) == pytest.approx(0.025)
    assert cost.storage_write_usd(516) == pytest.approx(2 * cost.storage_write_usd(258))
    # At 1 KB a row the prices alone differ: $0.01 per 200 MiB is $0.0512 per GiB, 2.048x.
    assert cost.insert_all_usd(1024) / cost.storage_write_usd(1024) == pytest.approx(2.048)
    # Below it the minimum adds 1024 / row bytes more.
    ratio = cost.insert_all_usd(258) / cost.storage_write_usd(258)
    assert ratio == pytest.approx(2.048 * 1024 / 258)


def test_the_ingest_cost_is_printed_from_real_quote_rows_with_its_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = backlog_of(600)
    row_bytes = cost.quote_row_bytes(corpus)
    # Quote rows as the load builds them, as JSON: a few hundred bytes, well under 1 KB.
    assert 200 < row_bytes < 400
    cost.print_ingest_cost(corpus)
    output = capsys.readouterr().out
    assert f"a quote row: {row_bytes:,.0f} bytes as JSON, the mean of 594" in output, output
    assert re.search(r"insertAll\)\s+0\.0488\s+\$0\.01 per 200 MiB, .* at least 1 KB", output)
    storage_write = f"{cost.storage_write_usd(row_bytes):.4f}"
    assert re.search(rf"Storage Write API\s+{storage_write}\s+\$0\.025 per GiB", output), output
    assert "first 2 TiB a month are free" in output, output
    assert "https://cloud.google.com/bigquery/pricing#data_ingestion_pricing" in output, output
    assert "checked 2026-12-07" in output, output
