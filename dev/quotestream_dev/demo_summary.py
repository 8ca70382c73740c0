"""What a demo run produced: the summary it prints, its JSON, the data-quality checks over the
part of the run every pair has delivered, and the PNG report."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quotestream.domain.ledger import Bar, LoadedQuote, PublishedMessage
from quotestream.domain.quote import format_ts
from quotestream.services.accounting import Accounting, AccountingService, latencies
from quotestream.services.quality import DataQualityFailed, DataQualityService
from quotestream_dev.stats import percentile

MIN_QUALITY_WINDOW_MS = 10_000


@dataclass(frozen=True)
class RunRecord:
    """One consistent read of a run: the ledger, the tables, and how they match."""

    start_ms: int
    published: list[PublishedMessage]
    loaded: list[LoadedQuote]
    bars: list[Bar]
    accounting: Accounting

    @classmethod
    def read(
        cls, accountant: AccountingService, published: list[PublishedMessage], start_ms: int
    ) -> RunRecord:
        loaded = accountant.loaded_quotes()
        return cls(
            start_ms, published, loaded, accountant.bars(), accountant.account(published, loaded)
        )


def summarize(
    record: RunRecord,
    quality: DataQualityService,
    airflow_url: str,
    pipeline_page: Mapping[str, Any],
) -> dict[str, Any]:
    accounting = record.accounting
    distinct_quotes = len({m.event_id for m in record.published if m.event_id})
    delays = latencies(record.published, record.loaded)
    return {
        "published_messages": accounting.published,
        "distinct_quotes_published": distinct_quotes,
        "rows_in_quotes": len(record.loaded),
        "messages_loaded": accounting.loaded,
        "messages_dead_lettered": accounting.dead_lettered,
        "dead_letters_by_reason": accounting.dead_letter_reasons,
        "unaccounted_message_ids": [m.message_id for m in accounting.unaccounted],
        "duplicate_rows": accounting.duplicate_rows,
        "bars": len(record.bars),
        "bar_pairs": len({bar.pair for bar in record.bars}),
        "latency_s": {label: _percentiles(values) for label, values in delays.items()},
        "data_quality": check_quality(quality, record),
        "airflow_ui": airflow_url,
        "pipeline_page": dict(pipeline_page),
        "started": format_ts(record.start_ms),
    }


def summary_lines(summary: dict[str, Any], passwords_file: Path) -> list[str]:
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(summary["dead_letters_by_reason"].items()))
    lost = len(summary["unaccounted_message_ids"])
    malformed = summary["published_messages"] - summary["distinct_quotes_published"]
    lines = [
        f"  published on `quotes`   {summary['published_messages']:,} messages "
        f"({summary['distinct_quotes_published']:,} distinct quotes, {malformed:,} malformed)",
        f"  rows in `quotes`        {summary['rows_in_quotes']:,}",
        f"  dead letters            {summary['messages_dead_lettered']:,}"
        + (f" ({reasons})" if reasons else ""),
        f"  in neither table        {lost:,}" + (" (nothing lost)" if not lost else ""),
        f"  duplicate rows          {summary['duplicate_rows']:,}",
        f"  1-minute bars           {summary['bars']:,} across {summary['bar_pairs']} pairs",
    ]
    for label, figures in summary["latency_s"].items():
        lines.append(
            f"  latency {label:<15} p50 {_seconds(figures['p50'])}  p95 {_seconds(figures['p95'])}"
        )
    quality = summary["data_quality"]
    lines.append(f"  data quality            {quality['window']}")
    lines += [f"    {line}" for line in quality["results"]]
    lines.append(
        f"  Airflow UI              {summary['airflow_ui']}  (admin / password in {passwords_file})"
    )
    page = summary["pipeline_page"]
    lines.append(
        f"  Quotes pipeline page    {page['url']}  (showed {page['rows_last_hour']:,} rows "
        f"and {page['dead_letters_last_hour']:,} dead letters in the last hour)"
    )
    return lines


def check_quality(service: DataQualityService, record: RunRecord) -> dict[str, Any]:
    """The checks of the quality DAG over the part of the run every pair has fully delivered:
    from each pair's first loaded quote to the earliest quote still in flight."""
    firsts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    for quote in record.loaded:
        firsts[quote.pair] = min(firsts.get(quote.pair, quote.event_ms), quote.event_ms)
        lasts[quote.pair] = max(lasts.get(quote.pair, quote.event_ms), quote.event_ms)
    if not firsts:
        return {"window": "skipped: nothing loaded", "passed": False, "results": []}
    in_flight = [m.event_ts_ms for m in record.accounting.unaccounted if m.event_ts_ms]
    start_ms = (max(firsts.values()) // 1000 + 1) * 1000
    end_ms = (min([*lasts.values(), *in_flight]) // 1000) * 1000
    if end_ms - start_ms < MIN_QUALITY_WINDOW_MS:
        return {"window": "skipped: under 10 s of complete data", "passed": False, "results": []}
    start, end = (datetime.fromtimestamp(ms / 1000, UTC) for ms in (start_ms, end_ms))
    try:
        results = service.run(start, end, f"demo-{record.start_ms}", check_freshness=True)
        passed, lines = True, [str(result) for result in results]
    except DataQualityFailed as failed:
        passed, lines = False, [str(result) for result in failed.failures]
    verdict = "passed" if passed else "FAILED"
    return {
        "window": f"{format_ts(start_ms)} .. {format_ts(end_ms)}: {verdict}",
        "passed": passed,
        "results": lines,
    }


def write_run_report(directory: Path, record: RunRecord, summary: dict[str, Any]) -> Path:
    """The PNG and, beside it, the summary as JSON; returns the PNG's path."""
    from quotestream_dev.report import write_report

    stamp = datetime.fromtimestamp(record.start_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"demo-{stamp}.png"
    lost = len(summary["unaccounted_message_ids"])
    title = f"quotestream demo {stamp}: {summary['published_messages']:,} published, {lost} lost"
    write_report(path, title, record.start_ms, record.published, record.loaded, record.bars)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _percentiles(values: list[float]) -> dict[str, float | None]:
    # None, not NaN, when nothing was measured: the summary is strict JSON.
    figures = {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
    return {key: None if math.isnan(value) else value for key, value in figures.items()}


def _seconds(value: float | None) -> str:
    return "   -  " if value is None else f"{value:.2f} s"
