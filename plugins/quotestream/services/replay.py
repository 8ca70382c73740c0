"""Re-drive kept dead letters through the gate after a fix; nothing is ever deleted.

What the gate now accepts is inserted into `quotes` where its event_id is missing, and a row
of `dead_letter_replays` marks the dead letter replayed; what still fails gets a row with the
gate's reason now. A dead letter already replayed, or failing again for the reason recorded
last time, is left alone: a second run changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import Quote, format_ts, now_ms
from quotestream.domain.rows import quote_row
from quotestream.domain.schemas import DEAD_LETTER_REPLAYS, QUOTES
from quotestream.domain.validation import InvalidQuote, Reason, parse_quote
from quotestream.ports import Warehouse
from quotestream.ports.queries import KeptDeadLetter, ReplayQueries, StoredRowLookups

# Where the writers keep a row BigQuery refused (beam/sinks.py): its payload is that row.
REFUSED_ROW_STAGE = "bigquery_insert"
REPLAYED = "replayed"
STILL_FAILING = "still_failing"


@dataclass(frozen=True, slots=True)
class ReplayCounts:
    examined: int
    inserted: int
    already_loaded: int
    still_failing: int
    unchanged: int
    dry_run: bool

    def __str__(self) -> str:
        mode = "dry run, nothing written: " if self.dry_run else ""
        return (
            f"{mode}{self.examined} dead letters examined: "
            f"{self.inserted + self.already_loaded} replayed ({self.inserted} inserted into "
            f"quotes, {self.already_loaded} already there), {self.still_failing} still "
            f"failing, {self.unchanged} unchanged since an earlier replay"
        )


class ReplayFailed(RuntimeError):
    pass


class DeadLetterReplayService:
    """Reads the dead letters and earlier verdicts through `queries`; asks `lookups`, as the
    load does, which quotes are stored already; writes through `warehouse`."""

    def __init__(
        self,
        queries: ReplayQueries,
        lookups: StoredRowLookups,
        warehouse: Warehouse,
        pairs: Sequence[str],
    ) -> None:
        self._queries = queries
        self._lookups = lookups
        self._warehouse = warehouse
        self._catalog = {pair: PAIR_CATALOG[pair] for pair in pairs}

    def run(
        self,
        start: datetime,
        end: datetime,
        reasons: Collection[str],
        run_id: str,
        *,
        dry_run: bool,
    ) -> ReplayCounts:
        """Replay the dead letters received in [start, end) of these reasons (all if empty)."""
        letters = self._queries.dead_letters_between(start, end, reasons)
        verdicts = self._queries.replay_verdicts([letter.row_id for letter in letters])
        parsed: list[tuple[KeptDeadLetter, Quote]] = []
        failing: list[tuple[KeptDeadLetter, str]] = []
        unchanged = 0
        for letter in letters:
            verdict = verdicts.get(letter.row_id)
            if verdict is not None and verdict.outcome == REPLAYED:
                unchanged += 1
                continue
            try:
                # Without the live load's freshness horizon: a quote it found too old is
                # history, which a replay exists to load.
                parsed.append(
                    (letter, parse_quote(_payload(letter), letter.attributes, pairs=self._catalog))
                )
            except InvalidQuote as error:
                if verdict is not None and verdict.reason == error.reason:
                    unchanged += 1
                else:
                    failing.append((letter, str(error.reason)))
        quotes = {quote.event_id: quote for _, quote in parsed}
        stored = self._lookups.stored_quote_ids(
            {event_id: quote.event_ts for event_id, quote in quotes.items()}
        )
        missing = [quote for event_id, quote in quotes.items() if event_id not in stored]
        counts = ReplayCounts(
            examined=len(letters),
            inserted=len(missing),
            already_loaded=len(parsed) - len(missing),
            still_failing=len(failing),
            unchanged=unchanged,
            dry_run=dry_run,
        )
        if not dry_run:
            # Quotes first: if the marks then fail, the next run finds the quotes stored.
            self._insert(
                QUOTES.name,
                [quote_row(q, now_ms()) for q in missing],
                [q.event_id for q in missing],
            )
            self._mark(parsed, failing, run_id)
        return counts

    def _mark(
        self,
        parsed: Sequence[tuple[KeptDeadLetter, Quote]],
        failing: Sequence[tuple[KeptDeadLetter, str]],
        run_id: str,
    ) -> None:
        replayed_ts = format_ts(now_ms())
        rows = [
            _replay_row(letter, REPLAYED, quote.event_id, None, run_id, replayed_ts)
            for letter, quote in parsed
        ] + [
            _replay_row(letter, STILL_FAILING, None, reason, run_id, replayed_ts)
            for letter, reason in failing
        ]
        ids = [f"{row['dead_letter_id']}|{row['outcome']}|{row['reason'] or ''}" for row in rows]
        self._insert(DEAD_LETTER_REPLAYS.name, rows, ids)

    def _insert(self, table: str, rows: Sequence[dict[str, Any]], ids: Sequence[str]) -> None:
        if not rows:
            return
        errors = self._warehouse.insert_rows(table, rows, ids)
        if errors:
            raise ReplayFailed(f"{table} refused {len(errors)} rows, first: {errors[0]}")


def _payload(letter: KeptDeadLetter) -> bytes:
    """The message body as received; a payload that is not even that fails as the gate's
    bad_encoding would."""
    if letter.payload is None:
        raise InvalidQuote(Reason.BAD_ENCODING, "no payload kept")
    if letter.payload_encoding != "base64":
        body = letter.payload.encode("utf-8")
    else:
        try:
            body = base64.b64decode(letter.payload, validate=True)
        except binascii.Error as error:
            raise InvalidQuote(
                Reason.BAD_ENCODING, f"kept payload is not base64: {error}"
            ) from None
    return _as_message(body) if letter.stage == REFUSED_ROW_STAGE else body


def _as_message(row: bytes) -> bytes:
    """A row BigQuery refused is kept as the quotes row it was: the gate's message plus the
    ingest_ts the writer stamped, which the gate would refuse as an unexpected field."""
    try:
        document = json.loads(row)
    except ValueError:
        return row  # the gate says why
    if isinstance(document, dict):
        document.pop("ingest_ts", None)
    return json.dumps(document).encode()


def _replay_row(
    letter: KeptDeadLetter,
    outcome: str,
    event_id: str | None,
    reason: str | None,
    run_id: str,
    replayed_ts: str,
) -> dict[str, Any]:
    return {
        "dead_letter_id": letter.row_id,
        "outcome": outcome,
        "event_id": event_id,
        "reason": reason,
        "original_reason": letter.reason,
        "run_id": run_id,
        "replayed_ts": replayed_ts,
    }
