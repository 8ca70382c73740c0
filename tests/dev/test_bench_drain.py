"""`quotestream bench drain`, briefly: both consumers drain the same small backlog, every
message ends in exactly one table, and the figures are printed."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.support.local_runs import own_stack_env

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def test_bench_drain_drains_the_backlog_with_each_consumer_and_loses_nothing() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "quotestream.entrypoints.cli",
            "bench",
            "drain",
            "--messages",
            "600",
        ],
        cwd=REPO,
        env=own_stack_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    for consumer in ("plain loop", "load job"):
        # 594 quotes and 6 dead letters, nothing lost, nothing twice; 600 messages drain
        # within a poll or two, so the figures may be n/a.
        assert re.search(
            rf"{consumer}\s+([\d,]+|n/a)\s+(\d+\.\d+|n/a)\s+594\s+6\s+0\s+0\n", output
        ), output[-3000:]
