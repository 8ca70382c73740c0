"""`quotestream bench cost` on a small corpus: the load's transforms on the FnApiRunner and the
plain loop each store every quote and dead letter once, and a CPU figure is printed; a run
that stores less is refused rather than measured."""

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


def test_a_run_that_stores_less_than_its_corpus_is_refused() -> None:
    def loses_the_dead_letters(corpus: cost.Backlog, run: str) -> cost.CountingWarehouse:
        warehouse = cost.CountingWarehouse()
        warehouse.insert_rows("quotes", [], sorted(corpus.quote_ids))
        return warehouse

    with pytest.raises(
        RuntimeError, match="594 quote rows and 0 dead letters stored, expected 594 and 6"
    ):
        cost._cpu_seconds(loses_the_dead_letters, backlog_of(600))
