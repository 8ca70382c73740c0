"""Data-quality checks of an interval; every result becomes a row of `dq_results`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from quotestream.domain.pairs import ticks_per_s
from quotestream.domain.quote import format_ts, now_ms, to_ms
from quotestream.domain.schemas import DQ_RESULTS
from quotestream.ports import QuoteQueries, QuoteSource, Warehouse


@dataclass(frozen=True, slots=True)
class CheckResult:
    check_name: str
    passed: bool
    observed: float
    threshold: float
    details: str
    pair: str | None = None

    def __str__(self) -> str:
        where = f" {self.pair}" if self.pair else ""
        verdict = "ok  " if self.passed else "FAIL"
        return f"{verdict} {self.check_name}{where}: {self.details}"


@dataclass(frozen=True, slots=True)
class Thresholds:
    freshness_s: float = 300.0
    min_volume_ratio: float = 0.9
    max_dead_letter_ratio: float = 0.01


class DataQualityFailed(RuntimeError):
    def __init__(self, failures: Sequence[CheckResult]) -> None:
        super().__init__("; ".join(str(failure) for failure in failures))
        self.failures = list(failures)


class DataQualityService:
    """The checks ask their questions of `queries`; the results are written to `warehouse`."""

    def __init__(
        self,
        queries: QuoteQueries,
        warehouse: Warehouse,
        source: QuoteSource,
        pairs: Sequence[str],
        thresholds: Thresholds = Thresholds(),
    ) -> None:
        self._queries = queries
        self._warehouse = warehouse
        self._source = source
        self._pairs = list(pairs)
        self._thresholds = thresholds

    def run(
        self, start: datetime, end: datetime, run_id: str, *, check_freshness: bool = True
    ) -> list[CheckResult]:
        """Run every check of [start, end), record each result, raise if any failed."""
        results = [
            *self._per_pair(start, end),
            self._bid_not_above_ask(start, end),
            self._no_duplicates(start, end),
            self._no_nulls(start, end),
            self._dead_letter_ratio(start, end),
        ]
        if check_freshness:
            results.append(self._freshness())
        self._record(results, start, end, run_id)
        failures = [result for result in results if not result.passed]
        if failures:
            raise DataQualityFailed(failures)
        return results

    def _per_pair(self, start: datetime, end: datetime) -> list[CheckResult]:
        counts = self._queries.distinct_quotes_per_pair(start, end)
        results = []
        seconds = (end - start).total_seconds()
        for pair in self._pairs:
            loaded = counts.get(pair, 0)
            expected_rate = seconds * ticks_per_s([pair])
            ratio = loaded / expected_rate if expected_rate else 1.0
            results.append(
                CheckResult(
                    "volume",
                    ratio >= self._thresholds.min_volume_ratio,
                    ratio,
                    self._thresholds.min_volume_ratio,
                    f"{loaded} quotes, {expected_rate:.0f} expected from the tick rate",
                    pair,
                )
            )
            served = sum(1 for _ in self._source.history(pair, to_ms(start), to_ms(end)))
            results.append(
                CheckResult(
                    "reconciliation",
                    loaded == served,
                    loaded,
                    served,
                    f"{loaded} in BigQuery, {served} in the API's history",
                    pair,
                )
            )
        return results

    def _bid_not_above_ask(self, start: datetime, end: datetime) -> CheckResult:
        crossed = self._queries.crossed_quotes(start, end)
        return CheckResult("bid_le_ask", crossed == 0, crossed, 0, f"{crossed} crossed rows")

    def _no_duplicates(self, start: datetime, end: datetime) -> CheckResult:
        extra = self._queries.duplicate_quote_rows(start, end)
        return CheckResult("duplicates", extra == 0, extra, 0, f"{extra} duplicate rows")

    def _no_nulls(self, start: datetime, end: datetime) -> CheckResult:
        nulls = self._queries.quotes_with_nulls(start, end)
        return CheckResult("nulls", nulls == 0, nulls, 0, f"{nulls} rows with nulls")

    def _dead_letter_ratio(self, start: datetime, end: datetime) -> CheckResult:
        dead = self._queries.dead_letters_received(start, end)
        good = self._queries.quotes_ingested(start, end)
        ratio = dead / (dead + good) if dead + good else 0.0
        limit = self._thresholds.max_dead_letter_ratio
        return CheckResult(
            "dead_letter_ratio",
            ratio <= limit,
            ratio,
            limit,
            f"{dead} dead letters against {good} loaded",
        )

    def _freshness(self) -> CheckResult:
        newest = self._queries.newest_event_ms()
        age = (now_ms() - newest) / 1000 if newest else float("inf")
        limit = self._thresholds.freshness_s
        detail = f"newest quote {age:.0f} s old" if newest else "no quotes at all"
        return CheckResult("freshness", age <= limit, age, limit, detail)

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
