"""Data-quality checks of an interval; every result becomes a row of `dq_results`. What the
checks are is data of their own (services/quality_checks.py): this runs them and records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from quotestream.domain.quote import format_ts, now_ms, to_ms
from quotestream.domain.schemas import DQ_RESULTS
from quotestream.domain.thresholds import QualityThresholds
from quotestream.ports import QuoteSource, Warehouse
from quotestream.ports.queries import QualityQueries
from quotestream.services.quality_checks import QUALITY_CHECKS, CheckedInterval, CheckResult


class DataQualityFailed(RuntimeError):
    def __init__(self, failures: Sequence[CheckResult]) -> None:
        super().__init__("; ".join(str(failure) for failure in failures))
        self.failures = list(failures)


class DataQualityService:
    """The checks ask their questions of `queries`; the results are written to `warehouse`.
    `api_source` is the `source` of the API's quotes (Settings.quote_source)."""

    def __init__(
        self,
        queries: QualityQueries,
        warehouse: Warehouse,
        source: QuoteSource,
        pairs: Sequence[str],
        thresholds: QualityThresholds | None = None,
        api_source: str = "sim",
    ) -> None:
        self._queries = queries
        self._warehouse = warehouse
        self._source = source
        self._pairs = list(pairs)
        self._thresholds = thresholds or QualityThresholds()
        self._api_source = api_source

    def run(
        self, start: datetime, end: datetime, run_id: str, *, check_freshness: bool = True
    ) -> list[CheckResult]:
        """Run every check of [start, end) (those of recent intervals only with
        `check_freshness`), record each result, raise if any failed."""
        interval = CheckedInterval(
            self._queries, self._source, self._pairs, self._thresholds, start, end, self._api_source
        )
        results = [
            result
            for check in QUALITY_CHECKS
            if check_freshness or not check.recent_only
            for result in check.run(interval)
        ]
        self._record(results, start, end, run_id)
        failures = [result for result in results if not result.passed]
        if failures:
            raise DataQualityFailed(failures)
        return results

    def _record(
        self, results: Sequence[CheckResult], start: datetime, end: datetime, run_id: str
    ) -> None:
        checked = format_ts(now_ms())
        rows = [
            {
                "check_name": result.check_name,
                "interval_start": format_ts(to_ms(start)),
                "interval_end": format_ts(to_ms(end)),
                "pair": result.pair,
                "passed": result.passed,
                "observed": result.observed if result.observed != float("inf") else None,
                "threshold": result.threshold,
                "details": result.details,
                "run_id": run_id,
                "checked_ts": checked,
            }
            for result in results
        ]
        ids = [f"{run_id}|{row['check_name']}|{row['pair'] or ''}" for row in rows]
        errors = self._warehouse.insert_rows(DQ_RESULTS.name, rows, ids)
        if errors:
            raise RuntimeError(f"dq_results refused rows: {errors}")
