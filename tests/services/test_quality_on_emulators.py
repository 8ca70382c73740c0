"""Data-quality checks on the BigQuery emulator: they pass on good data, fail on planted bad
data, and every result lands in dq_results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.domain.quote import to_ms
from quotestream.domain.rows import quote_row
from quotestream.services.quality import DataQualityFailed
from tests.conftest import SEED

pytestmark = pytest.mark.integration

PAIRS = ("USD-BRL", "BTC-USD")


def test_checks_pass_on_good_data_and_fail_on_planted_bad_data(provisioned: Any) -> None:
    settings = provisioned("dq", PAIRS)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(minutes=3)
    bootstrap.build_backfill_service(settings).run(start, end, "dq-load")

    passed = bootstrap.build_data_quality_service(settings).run(start, end, "good-run")
    assert all(result.passed for result in passed)
    assert {r.check_name for r in passed} == {
        "volume",
        "reconciliation",
        "bid_le_ask",
        "duplicates",
        "nulls",
        "dead_letter_ratio",
        "freshness",
        "price_jump",
        "stale_pair",
        "tick_gaps",
        "bars",
    }

    warehouse = bootstrap.build_warehouse(settings)
    market = MarketSimulator(SEED, PAIR_CATALOG)
    inside = market.quote(PAIR_CATALOG["USD-BRL"], to_ms(start) // 1000 + 30)
    crossed = {**quote_row(inside, to_ms(end)), "bid": "9.9999", "ask": "1.0000"}
    warehouse.insert_rows("quotes", [crossed], ["planted-crossed"])

    with pytest.raises(DataQualityFailed) as failed:
        bootstrap.build_data_quality_service(settings).run(start, end, "bad-run")
    failing = {(f.check_name, f.pair) for f in failed.value.failures}
    assert failing == {("bid_le_ask", None), ("duplicates", None)}

    recorded = warehouse.query(
        "SELECT run_id, check_name, passed FROM {dataset}.dq_results ORDER BY run_id, check_name"
    )
    assert {r["run_id"] for r in recorded} == {"good-run", "bad-run"}
    assert sum(1 for r in recorded if r["run_id"] == "good-run" and r["passed"]) == len(passed)
    assert {r["check_name"] for r in recorded if not r["passed"]} == {"bid_le_ask", "duplicates"}
