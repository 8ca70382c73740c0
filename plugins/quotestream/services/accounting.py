"""Where every published message went: a row of `quotes` (found by event_id), a row of
`quotes_dead_letter` (found by message id), or neither yet: in flight, or lost.

The ledger of published messages comes from a tap on the topic (a subscription of its own),
so the check does not trust the pipeline's own counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from quotestream.domain.ledger import Bar, LoadedQuote, PublishedMessage
from quotestream.ports import Warehouse


@dataclass(frozen=True)
class Accounting:
    published: int
    loaded: int
    dead_lettered: int
    unaccounted: tuple[PublishedMessage, ...]
    duplicate_rows: int
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.unaccounted and not self.duplicate_rows


@dataclass(frozen=True, slots=True)
class Progress:
    loaded: int
    dead_letters: int
    newest_event_ms: int | None


class AccountingService:
    """Reads what the warehouse holds since `since_ms` (a run's start)."""

    def __init__(self, warehouse: Warehouse, since_ms: int) -> None:
        self._warehouse = warehouse
        self._since_ms = since_ms

    def progress(self) -> Progress:
        row = self._warehouse.query(
            "SELECT COUNT(*) AS n, UNIX_MILLIS(MAX(event_ts)) AS newest FROM {dataset}.quotes "
            "WHERE UNIX_MILLIS(ingest_ts) >= @since",
            {"since": self._since_ms},
        )[0]
        dead = self._warehouse.query(
            "SELECT COUNT(*) AS n FROM {dataset}.quotes_dead_letter "
            "WHERE UNIX_MILLIS(received_ts) >= @since",
            {"since": self._since_ms},
        )[0]
        return Progress(int(row["n"]), int(dead["n"]), row["newest"])

    def loaded_quotes(self) -> list[LoadedQuote]:
        return [
            LoadedQuote(row["event_id"], row["pair"], row["event_ms"], row["ingest_ms"])
            for row in self._warehouse.query(
                "SELECT event_id, pair, UNIX_MILLIS(event_ts) AS event_ms, "
                "UNIX_MILLIS(ingest_ts) AS ingest_ms FROM {dataset}.quotes "
                "WHERE UNIX_MILLIS(ingest_ts) >= @since",
                {"since": self._since_ms},
            )
        ]

    def bars(self) -> list[Bar]:
        """The final pane of each (pair, minute): late panes are rows of their own."""
        rows = self._warehouse.query(
            "SELECT pair, UNIX_MILLIS(window_start) AS start_ms, CAST(open AS FLOAT64) AS o, "
            "CAST(high AS FLOAT64) AS h, CAST(low AS FLOAT64) AS l, CAST(close AS FLOAT64) AS c, "
            "tick_count, COALESCE(pane_index, 0) AS pane_index FROM {dataset}.quote_bars_1m "
            "WHERE UNIX_MILLIS(window_end) >= @since",
            {"since": self._since_ms},
        )
        final: dict[tuple[str, int], tuple[int, Bar]] = {}
        for row in rows:
            bar = Bar(
                row["pair"],
                row["start_ms"],
                row["o"],
                row["h"],
                row["l"],
                row["c"],
                row["tick_count"],
            )
            key = (bar.pair, bar.window_start_ms)
            if key not in final or row["pane_index"] > final[key][0]:
                final[key] = (row["pane_index"], bar)
        return [bar for _, (_, bar) in sorted(final.items())]

    def account(self, published: Sequence[PublishedMessage]) -> Accounting:
        loaded_ids: Counter[str] = Counter(quote.event_id for quote in self.loaded_quotes())
        dead = {
            row["message_id"]: row["reason"]
            for row in self._warehouse.query(
                "SELECT message_id, reason FROM {dataset}.quotes_dead_letter "
                "WHERE UNIX_MILLIS(received_ts) >= @since AND message_id IS NOT NULL",
                {"since": self._since_ms},
            )
        }
        reasons: Counter[str] = Counter()
        loaded = dead_lettered = 0
        unaccounted = []
        # A dead letter first: a refused copy of a good quote shares its event_id.
        for message in published:
            if message.message_id in dead:
                dead_lettered += 1
                reasons[dead[message.message_id]] += 1
            elif message.event_id is not None and message.event_id in loaded_ids:
                loaded += 1
            else:
                unaccounted.append(message)
        return Accounting(
            published=len(published),
            loaded=loaded,
            dead_lettered=dead_lettered,
            unaccounted=tuple(unaccounted),
            duplicate_rows=sum(count - 1 for count in loaded_ids.values()),
            dead_letter_reasons=dict(reasons),
        )
