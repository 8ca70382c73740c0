"""`quotestream bench airflow --runs 1`: Airflow's API server started with the shipped plugins
folder (the page mounted, and guarded) and without the plugin (no page), timed side by side."""

from __future__ import annotations

import re

import pytest

from quotestream_dev.bench import airflow_start
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def test_bench_airflow_times_both_starts_and_prints_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert airflow_start.run(1, REPO) == 0
    output = capsys.readouterr().out
    assert re.search(r"run 1: without the plugin\s+answered in \d+\.\d\d s", output), output
    assert re.search(r"run 1: with the plugin\s+answered in \d+\.\d\d s", output), output
    assert re.search(r"with the plugin\s+\d+\.\d\d s\s+\(\d+\.\d\dx\)", output), output
