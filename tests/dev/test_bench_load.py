"""`quotestream bench load`, briefly: the whole local stack under a steady push prints its
figures and measures a loss of zero."""

from __future__ import annotations

import re

import pytest

from tests.support.local_runs import run_own_stack_command

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def test_bench_load_prints_its_figures_and_loses_nothing() -> None:
    code, output = run_own_stack_command(
        "bench", "load", "--rate", "20", "--seconds", "10", timeout=400
    )
    assert code == 0, output[-3000:]
    assert re.search(r"rows in quotes\s+200 of 200 pushed", output), output[-3000:]
    assert re.search(r"lost\s+0\n", output)
    assert re.search(r"duplicates\s+0\n", output)
    for process in ("pubsub", "bigquery", "api", "load job"):
        assert re.search(rf"peak memory {process}\s+[1-9][\d,]* MiB", output), output[-3000:]
    assert re.search(r"latency publish -> row\s+p50\s+\d+\.\d\d s", output)
