"""`quotestream bench drain`, briefly: both consumers drain the same small backlog, every
message ends in exactly one table, and the figures are printed."""

from __future__ import annotations

import re

import pytest

from tests.support.local_runs import run_own_stack_command

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def test_bench_drain_drains_the_backlog_with_each_consumer_and_loses_nothing() -> None:
    code, output = run_own_stack_command("bench", "drain", "--messages", "600", timeout=400)
    assert code == 0, output[-3000:]
    for consumer in ("plain loop", "load job"):
        # 594 quotes and 6 dead letters, nothing lost, nothing twice; 600 messages drain
        # within a poll or two, so the figures may be n/a.
        assert re.search(
            rf"{consumer}\s+([\d,]+|n/a)\s+(\d+\.\d+|n/a)\s+594\s+6\s+0\s+0\n", output
        ), output[-3000:]
