"""The query ports are cut by consumer, and the SQL and the fakes the same way: each port has a
BigQuery class and an in-memory fake that answer exactly its questions."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from quotestream.adapters.gcp import bigquery_queries
from quotestream.ports import queries as ports
from tests.support import fakes

pytestmark = pytest.mark.unit

# BarQueries is answered by the quality queries' classes: the page asks one of their questions.
ANSWERED_BY_ANOTHER = {"BarQueries"}


def questions(cls: Any) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def query_ports() -> list[str]:
    return sorted(
        name
        for name, member in vars(ports).items()
        if inspect.isclass(member)
        and getattr(member, "_is_protocol", False)
        and member.__module__ == ports.__name__
    )


@pytest.mark.parametrize("port", sorted(set(query_ports()) - ANSWERED_BY_ANOTHER))
def test_each_port_has_its_sql_and_its_fake_asking_exactly_its_questions(port: str) -> None:
    asked = questions(getattr(ports, port))
    assert questions(getattr(bigquery_queries, f"BigQuery{port}")) == asked
    assert questions(getattr(fakes, f"InMemory{port}")) == asked


def test_the_quality_queries_answer_the_pages_bars_too() -> None:
    assert questions(ports.BarQueries) <= questions(ports.QualityQueries)
    assert query_ports() == [
        "AccountingQueries",
        "BackfillWrites",
        "BarQueries",
        "HealthQueries",
        "QualityQueries",
        "ReplayQueries",
        "ResumePoints",
        "StoredRowLookups",
    ]
