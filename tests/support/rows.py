"""Rows as the tables hold them, to fill the in-memory warehouse and the emulator alike."""

from __future__ import annotations

from typing import Any

from quotestream.domain.quote import format_ts
from quotestream.domain.rows import dead_letter_row
from tests.support.builders import quote_dict

MINUTE_MS = 60_000


def quote_at(
    event_ms: int, ingest_ms: int | None = None, pair: str = "USD-BRL", **prices: str
) -> dict[str, Any]:
    """A `quotes` row of a valid quote at `event_ms`, written at `ingest_ms` (by default a
    second later; None: a row without ingest_ts)."""
    written = event_ms + 1_000 if ingest_ms is None else ingest_ms
    return {**quote_dict(pair, event_ts_ms=event_ms, **prices), "ingest_ts": format_ts(written)}


def unwritten(row: dict[str, Any]) -> dict[str, Any]:
    """The same quote row without its ingest_ts, as a NULL there."""
    return {**row, "ingest_ts": None}


def dead_letter_at(
    received_ms: int, message_id: str | None = None, reason: str = "malformed_json"
) -> dict[str, Any]:
    """A `quotes_dead_letter` row of a parse failure received at `received_ms`."""
    return dead_letter_row(
        b"{not json",
        {"origin": "test"},
        reason=reason,
        error="not JSON",
        stage="parse",
        received_ts_ms=received_ms,
        message_id=message_id,
    )


def bar_at(
    window_start_ms: int, pane_index: int | None, close: str, pair: str = "USD-BRL"
) -> dict[str, Any]:
    """A `quote_bars_1m` row: one pane of the minute from `window_start_ms`."""
    return {
        "pair": pair,
        "window_start": format_ts(window_start_ms),
        "window_end": format_ts(window_start_ms + MINUTE_MS),
        "open": "5.35",
        "high": "5.36",
        "low": "5.34",
        "close": close,
        "tick_count": 3 + (pane_index or 0),
        "pane": None if pane_index is None else f"LATE:{pane_index}",
        "pane_index": pane_index,
    }


def quality_row(
    check: str,
    pair: str | None,
    interval_start_ms: int,
    passed: bool,
    run_id: str,
    checked_ms: int,
    details: str = "",
) -> dict[str, Any]:
    """A `dq_results` row: one check of the hour from `interval_start_ms`."""
    return {
        "check_name": check,
        "interval_start": format_ts(interval_start_ms),
        "interval_end": format_ts(interval_start_ms + 3_600_000),
        "pair": pair,
        "passed": passed,
        "observed": 1.0 if passed else 0.0,
        "threshold": 1.0,
        "details": details,
        "run_id": run_id,
        "checked_ts": format_ts(checked_ms),
    }
