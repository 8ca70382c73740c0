"""Backfill an interval from the API's history, INSERT-only and idempotent.

The interval's quotes go through the gate into a scratch table by a load job; one
INSERT ... WHERE NOT EXISTS then adds only the event_ids `quotes` lacks. Rows still in
BigQuery's streaming buffer cannot be updated or deleted, but they can be read, so an
insert of what is missing is safe where a MERGE or DELETE would fail; and running the same
interval twice inserts nothing the second time.

The API is the one source with history: a stream (OANDA's) has none. Where the extract read
another source (the API was down), `quotes` holds that source's quotes, under other event ids:
the API's quotes of those spans are left out, so no instant is stored from two sources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import dead_letter_row, dead_letter_row_id, quote_row
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from quotestream.domain.validation import InvalidQuote, parse_quote
from quotestream.ports import QuoteSource, Warehouse
from quotestream.ports.queries import BackfillWrites, ServedSpan, served_elsewhere_at


@dataclass(frozen=True, slots=True)
class BackfillResult:
    start: datetime
    end: datetime
    fetched: int
    dead_lettered: int
    inserted: int
    # Fetched quotes of spans another source served: left out.
    served_elsewhere: int

    def __str__(self) -> str:
        already = self.fetched - self.inserted - self.dead_lettered - self.served_elsewhere
        return (
            f"backfill [{self.start:%Y-%m-%d %H:%M:%S}, {self.end:%Y-%m-%d %H:%M:%S}) UTC: "
            f"{self.fetched} fetched, {self.inserted} inserted, {already} already there, "
            f"{self.served_elsewhere} left out (another source served their spans), "
            f"{self.dead_lettered} dead-lettered"
        )


class BackfillService:
    """Writes the scratch table and the dead letters through `warehouse`; `writes` names the
    spans another source served and inserts what `quotes` lacks. `api_source` is the `source`
    of the API's quotes (Settings.quote_source)."""

    def __init__(
        self,
        source: QuoteSource,
        warehouse: Warehouse,
        writes: BackfillWrites,
        pairs: Sequence[str],
        api_source: str = "sim",
    ) -> None:
        self._source = source
        self._warehouse = warehouse
        self._writes = writes
        self._pairs = list(pairs)
        self._api_source = api_source

    def run(self, start: datetime, end: datetime, run_label: str) -> BackfillResult:
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ValueError(f"need an aware interval with start < end, got [{start}, {end})")
        start_ms, end_ms = to_ms(start), to_ms(end)
        now = now_ms()
        elsewhere = self._writes.served_elsewhere(start, end, self._api_source)
        rows, dead, left_out = [], [], 0
        for pair in self._pairs:
            history = self._source.history(pair, start_ms, end_ms)
            gated = _gate(history, elsewhere.get(pair, []), run_label, now)
            rows += gated.rows
            dead += gated.dead
            left_out += gated.left_out
        if dead:
            self._warehouse.insert_rows(
                QUOTES_DEAD_LETTER.name, dead, [dead_letter_row_id(row) for row in dead]
            )
        scratch = f"{QUOTES.name}_backfill_{re.sub(r'[^A-Za-z0-9_]', '_', run_label)}"[:1024]
        self._warehouse.create_scratch_table(scratch, QUOTES)
        try:
            if rows:
                self._warehouse.load_rows(scratch, QUOTES, rows)
            inserted = self._writes.insert_missing_quotes(scratch, start, end)
        finally:
            self._warehouse.drop_table(scratch)
        fetched = len(rows) + len(dead) + left_out
        return BackfillResult(start, end, fetched, len(dead), inserted, left_out)


@dataclass(slots=True)
class _Gated:
    """A pair's history through the gate: the rows to insert if missing, the dead letters, and
    how many good quotes fell in spans another source served."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    left_out: int = 0


def _gate(
    history: Iterable[Mapping[str, Any]], spans: Sequence[ServedSpan], run_label: str, now: int
) -> _Gated:
    gated = _Gated()
    for served in history:
        payload = json.dumps(served, separators=(",", ":")).encode()
        try:
            # History: no freshness horizon (the live load's max_age_ms) applies.
            quote = parse_quote(payload)
        except InvalidQuote as error:
            gated.dead.append(
                dead_letter_row(
                    payload,
                    {"backfill": run_label},
                    reason=error.reason,
                    error=error.detail,
                    stage="backfill",
                    received_ts_ms=now,
                )
            )
            continue
        if served_elsewhere_at(spans, quote.event_ts_ms):
            gated.left_out += 1
        else:
            gated.rows.append(quote_row(quote, now))
    return gated
