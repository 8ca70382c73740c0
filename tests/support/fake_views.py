"""PipelineViews answered in plain Python from the rows an InMemoryWarehouse holds, as the SQL
of BigQueryPipelineViews answers them (percentiles exact where BigQuery's are approximate)."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from quotestream.adapters.gcp.bigquery_views import SAMPLE_CHARS
from quotestream.domain.schemas import DQ_RESULTS, QUOTES, QUOTES_DEAD_LETTER
from quotestream.ports.views import DeadLetterGroup, Lag, MinuteCount, PairLatest, QualityResult
from tests.support.fakes import InMemoryWarehouse, ms_of

MINUTE_MS = 60_000


@dataclass
class InMemoryPipelineViews:
    warehouse: InMemoryWarehouse

    def _written_since(self, since_ms: int) -> list[dict]:
        return [
            row
            for row in self.warehouse.rows(QUOTES.name)
            if row.get("ingest_ts") and ms_of(row["ingest_ts"]) >= since_ms
        ]

    def rows_per_minute(self, since_ms: int) -> list[MinuteCount]:
        minutes = Counter(
            ms_of(row["ingest_ts"]) // MINUTE_MS * MINUTE_MS
            for row in self._written_since(since_ms)
        )
        return [MinuteCount(minute, rows) for minute, rows in sorted(minutes.items())]

    def lag(self, since_ms: int) -> Lag:
        lags = sorted(
            ms_of(row["ingest_ts"]) - ms_of(row["event_ts"])
            for row in self._written_since(since_ms)
        )
        if not lags:
            return Lag(None, None, 0)

        def rank(percent: int) -> float:
            return lags[min(len(lags) - 1, len(lags) * percent // 100)] / 1000

        return Lag(rank(50), rank(95), len(lags))

    def latest_per_pair(self, since_ms: int, switches_since_ms: int) -> dict[str, PairLatest]:
        quotes: dict[str, list[tuple[int, str]]] = {}
        for row in self.warehouse.rows(QUOTES.name):
            if ms_of(row["event_ts"]) >= since_ms:
                quotes.setdefault(row["pair"], []).append((ms_of(row["event_ts"]), row["source"]))
        return {pair: _latest(sorted(own), switches_since_ms) for pair, own in quotes.items()}

    def dead_letters_by_reason(self, since_ms: int) -> list[DeadLetterGroup]:
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in self.warehouse.rows(QUOTES_DEAD_LETTER.name):
            if ms_of(row["received_ts"]) >= since_ms:
                groups.setdefault((row["reason"], row["stage"]), []).append(row)
        result = []
        for (reason, stage), rows in groups.items():
            newest = max(rows, key=lambda row: ms_of(row["received_ts"]))
            sample = (newest.get("payload") or "")[:SAMPLE_CHARS]
            result.append(
                DeadLetterGroup(reason, stage, len(rows), ms_of(newest["received_ts"]), sample)
            )
        return sorted(result, key=lambda group: (-group.count, group.reason, group.stage))

    def quality_results(self, since_ms: int) -> list[QualityResult]:
        newest: dict[tuple[str, str | None, int], dict] = {}
        for row in self.warehouse.rows(DQ_RESULTS.name):
            key = (row["check_name"], row.get("pair"), ms_of(row["interval_start"]))
            if key[2] >= since_ms and (
                key not in newest or ms_of(row["checked_ts"]) > ms_of(newest[key]["checked_ts"])
            ):
                newest[key] = row
        results = [
            QualityResult(
                row["check_name"],
                row.get("pair"),
                ms_of(row["interval_start"]),
                ms_of(row["interval_end"]),
                bool(row["passed"]),
                row.get("details") or "",
                row.get("run_id") or "",
                ms_of(row["checked_ts"]),
            )
            for row in newest.values()
        ]
        return sorted(
            results,
            key=lambda r: (-r.interval_start_ms, r.check_name, r.pair or ""),
        )

    def close(self) -> None:
        pass


def _latest(quotes: list[tuple[int, str]], switches_since_ms: int) -> PairLatest:
    """`quotes` (event time, source) ordered as the SQL orders them: by time, then source."""
    since_ms, switches = quotes[0][0], 0
    for (_, before), (stamp, source) in itertools.pairwise(quotes):
        if source != before:
            since_ms = stamp
            if stamp >= switches_since_ms:
                switches += 1
    newest_ms, source = quotes[-1]
    return PairLatest(newest_ms, source, since_ms, switches)
