"""`quotestream bench drain`, briefly: the plain loop and the load job with each BigQuery writer
drain the same small backlog, every message ends in exactly one table for each, and the
figures of each (both writers side by side) are printed."""

from __future__ import annotations

import re

import pytest

from tests.support.local_runs import run_own_stack_command

pytestmark = [pytest.mark.integration, pytest.mark.emulators]

NUMBER = r"[\d,]+(?:\.\d+)?"


def test_bench_drain_drains_the_backlog_with_each_consumer_and_loses_nothing() -> None:
    code, output = run_own_stack_command("bench", "drain", "--messages", "2000", timeout=600)
    assert code == 0, output[-3000:]
    for consumer in ("plain loop", "insert_all", "storage_write"):
        assert f"{consumer}: exactly once (0 lost, 0 twice;" in output, output[-3000:]
        # rows/s, CPU per 1,000 rows, CPU a second while draining (n/a should the backlog
        # drain between two polls), idle CPU a second, the emulator's CPU per 1,000 rows, peak
        # MiB, the cores the rest of the machine kept busy.
        figures = re.search(
            rf"\n  {consumer}\s+({NUMBER}|n/a)\s+({NUMBER}|n/a)\s+({NUMBER}|n/a)\s+([\d,]+)"
            rf"\s+({NUMBER}|n/a)\s+([\d,]+)\s+({NUMBER}|n/a)\n",
            output,
        )
        assert figures, output[-3000:]
        assert int(figures[6].replace(",", "")) > 0, figures[0]
        # 1,980 quotes and 20 dead letters, nothing lost, nothing twice.
        assert re.search(rf"\n  {consumer}\s+1,980\s+20\s+0\s+0\s+yes\n", output), output[-3000:]
    for name, against in (
        ("storage_write", "insert_all"),
        ("insert_all", "plain loop"),
        ("storage_write", "plain loop"),
    ):
        # A ratio is n/a where its baseline is 0: CPU counted in 10 ms ticks over a short span.
        ratio = rf"({NUMBER}x|n/a)"
        assert re.search(
            rf"\n  {name} / {against}: (rate {ratio}, CPU per row {ratio}, peak memory {ratio}"
            "|drained between two polls)",
            output,
        ), output[-3000:]
