"""Backfill an interval from the API's history, INSERT-only and idempotent.

The interval's quotes go through the gate into a scratch table by a load job; one
INSERT ... WHERE NOT EXISTS then adds only the event_ids `quotes` lacks. Rows still in
BigQuery's streaming buffer cannot be updated or deleted, but they can be read, so an
insert of what is missing is safe where a MERGE or DELETE would fail; and running the same
interval twice inserts nothing the second time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from quotestream.domain.quote import now_ms, to_ms
from quotestream.domain.rows import dead_letter_row, dead_letter_row_id, quote_row
from quotestream.domain.schemas import QUOTES, QUOTES_DEAD_LETTER
from quotestream.domain.validation import InvalidQuote, parse_quote
from quotestream.ports import QuoteSource, Warehouse
from quotestream.ports.queries import BackfillWrites


@dataclass(frozen=True, slots=True)
class BackfillResult:
    start: datetime
    end: datetime
    fetched: int
    dead_lettered: int
    inserted: int

    def __str__(self) -> str:
        return (
            f"backfill [{self.start:%Y-%m-%d %H:%M:%S}, {self.end:%Y-%m-%d %H:%M:%S}) UTC: "
            f"{self.fetched} fetched, {self.inserted} inserted, "
            f"{self.fetched - self.inserted - self.dead_lettered} already there, "
            f"{self.dead_lettered} dead-lettered"
        )


class BackfillService:
    """Writes the scratch table and the dead letters through `warehouse`; `writes` inserts
    what `quotes` lacks."""

    def __init__(
        self,
        source: QuoteSource,
        warehouse: Warehouse,
        writes: BackfillWrites,
        pairs: Sequence[str],
    ) -> None:
        self._source = source
        self._warehouse = warehouse
        self._writes = writes
        self._pairs = list(pairs)

    def run(self, start: datetime, end: datetime, run_label: str) -> BackfillResult:
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ValueError(f"need an aware interval with start < end, got [{start}, {end})")
        start_ms, end_ms = to_ms(start), to_ms(end)
        now = now_ms()
        rows, dead = [], []
        for pair in self._pairs:
            for served in self._source.history(pair, start_ms, end_ms):
                payload = json.dumps(served, separators=(",", ":")).encode()
                try:
                    # History: no freshness horizon (the live load's max_age_ms) applies.
                    rows.append(quote_row(parse_quote(payload), now))
                except InvalidQuote as error:
                    dead.append(
                        dead_letter_row(
                            payload,
                            {"backfill": run_label},
                            reason=error.reason,
                            error=error.detail,
                            stage="backfill",
                            received_ts_ms=now,
                        )
                    )
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
        return BackfillResult(start, end, len(rows) + len(dead), len(dead), inserted)
