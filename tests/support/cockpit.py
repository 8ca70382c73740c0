"""A cockpit service over the in-memory fakes, with one quote written a few seconds ago."""

from __future__ import annotations

from quotestream.services.cockpit import CockpitService
from quotestream.services.streaming import StreamingService
from tests.support.fake_views import InMemoryPipelineViews
from tests.support.fakes import (
    InMemoryHealthQueries,
    InMemoryJobRunner,
    InMemoryQualityQueries,
    InMemoryWarehouse,
)
from tests.support.rows import quote_at

NOW_MS = 1_795_000_020_000


def in_memory_cockpit() -> CockpitService:
    warehouse = InMemoryWarehouse()
    warehouse.insert_rows("quotes", [quote_at(NOW_MS - 5_000, NOW_MS - 4_000)])
    runner = InMemoryJobRunner()
    clock = lambda: NOW_MS / 1000  # noqa: E731
    return CockpitService(
        runner,
        StreamingService(runner, InMemoryHealthQueries(warehouse), "quotes-load", clock=clock),
        InMemoryQualityQueries(warehouse),
        InMemoryPipelineViews(warehouse),
        ("USD-BRL", "EUR-USD"),
        clock=clock,
    )
