"""The registry of quality checks is all a new check needs: each check asks the warehouse (or
the API) something, judges by thresholds that exist, and shows in the DAG's docs, the
operations doc and the page's open gaps without an edit there; the registry loads no cloud
client, Beam or Airflow, so DAG files may read it when parsed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quotestream.domain.thresholds import QualityThresholds
from quotestream.ports.queries import QualityQueries
from quotestream.services.cockpit import GAP_CHECKS
from quotestream.services.quality_checks import QUALITY_CHECKS, CheckedInterval, checks_table
from tests.conftest import REPO
from tests.support.fakes import InMemoryQualityQueries, InMemoryQuoteSource, InMemoryWarehouse

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 1, 10, tzinfo=UTC)
END = START + timedelta(hours=1)
PAIRS = ("EUR-BRL", "EUR-USD", "USD-BRL")  # a triangle: every check has something to judge


@dataclass
class Asked:
    """The quality queries and the API's history, noting each question put to them."""

    queries: InMemoryQualityQueries = field(
        default_factory=lambda: InMemoryQualityQueries(InMemoryWarehouse())
    )
    questions: list[str] = field(default_factory=list)

    def __getattr__(self, question: str) -> Any:
        self.questions.append(question)
        return getattr(self.queries, question)

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        self.questions.append("history")
        return InMemoryQuoteSource().history(pair, start_ms, end_ms)


def questions_of(check_name: str) -> list[str]:
    asked = Asked()
    interval = CheckedInterval(asked, asked, PAIRS, QualityThresholds(), START, END, "sim")  # type: ignore[arg-type]
    (check,) = [check for check in QUALITY_CHECKS if check.name == check_name]
    results = check.run(interval)
    assert results, f"{check_name} judged nothing"
    assert {result.check_name for result in results} == {check_name}
    return asked.questions


@pytest.mark.parametrize("check_name", [check.name for check in QUALITY_CHECKS])
def test_every_check_asks_the_warehouse_or_the_api_something(check_name: str) -> None:
    assert questions_of(check_name)


def test_every_quality_question_is_asked_by_some_check() -> None:
    asked = {question for check in QUALITY_CHECKS for question in questions_of(check.name)}
    port = {name for name in vars(QualityQueries) if not name.startswith("_")} - {"close"}
    port |= {"final_bars"}  # QualityQueries has it from BarQueries
    assert port <= asked


def test_the_names_are_unique_and_every_threshold_is_judged_by_a_check() -> None:
    names = [check.name for check in QUALITY_CHECKS]
    assert len(names) == len(set(names))
    named = [threshold for check in QUALITY_CHECKS for threshold in check.thresholds]
    assert sorted(named) == sorted(QualityThresholds.names())


def test_the_page_takes_its_open_gaps_from_the_registry() -> None:
    missing_quotes = {check.name for check in QUALITY_CHECKS if check.means_missing_quotes}
    assert GAP_CHECKS == missing_quotes == {"volume", "reconciliation", "tick_gaps"}


def test_the_docs_list_every_check_with_its_thresholds() -> None:
    table = checks_table()
    for check in QUALITY_CHECKS:
        (row,) = [line for line in table.splitlines() if line.startswith(f"| `{check.name}`")]
        assert all(f"`{threshold}`" in row for threshold in check.thresholds)
    assert "{" not in table, "a threshold named in a check's text is not a QualityThresholds field"


def test_the_operations_doc_holds_the_table_the_registry_makes() -> None:
    assert checks_table() in (REPO / "docs" / "operations.md").read_text(), (
        "docs/operations.md's table of checks is stale: paste in the output of "
        "`.venv/bin/python -c 'from quotestream.services.quality_checks import checks_table; "
        "print(checks_table())'`"
    )


def test_the_registry_loads_no_cloud_client_beam_or_airflow() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, quotestream.services.quality_checks; "
            "print(sorted(m for m in sys.modules if m.startswith("
            "('airflow', 'apache_beam', 'google.cloud.'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert loaded.stdout.strip() == "[]"
