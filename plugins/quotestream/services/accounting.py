"""Where every published message went: a row of `quotes` (found by event_id), a row of
`quotes_dead_letter` (found by message id, or by row id for a quote BigQuery refused), or
neither yet: in flight, or lost. A quote stored before the run began counts as stored: a
relaunched extract fetches again the last minute a previous job had already published.

The ledger of published messages comes from a tap on the topic (a subscription of its own),
so the check does not trust the pipeline's own counters.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from quotestream.domain.ledger import Bar, LoadedQuote, PublishedMessage
from quotestream.domain.rows import refused_row_id
from quotestream.domain.schemas import QUOTES
from quotestream.ports import TopicTap
from quotestream.ports.queries import AccountingQueries, BarPane, Progress, StoredRowLookups


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
        """Every message in exactly one table, and no quote twice."""
        return not self.unaccounted and not self.duplicate_rows


class AccountingService:
    """Reads what the warehouse holds since `since_ms` (a run's start)."""

    def __init__(
        self,
        queries: AccountingQueries,
        since_ms: int,
        earlier: StoredRowLookups | None = None,
    ) -> None:
        self._queries = queries
        self._since_ms = since_ms
        self._earlier = earlier

    def progress(self) -> Progress:
        return self._queries.progress_since(self._since_ms)

    def loaded_quotes(self) -> list[LoadedQuote]:
        return self._queries.loaded_quotes_since(self._since_ms)

    def bars(self) -> list[Bar]:
        """The final pane of each (pair, minute): late panes are rows of their own."""
        final: dict[tuple[str, int], BarPane] = {}
        for pane in self._queries.bar_panes_since(self._since_ms):
            key = (pane.bar.pair, pane.bar.window_start_ms)
            if key not in final or pane.pane_index > final[key].pane_index:
                final[key] = pane
        return [final[key].bar for key in sorted(final)]

    def dead_letters(self) -> dict[str, str]:
        """message id -> reason of the run's dead-letter rows."""
        return self._queries.dead_letter_reasons_since(self._since_ms)

    def account(
        self, published: Sequence[PublishedMessage], loaded: Sequence[LoadedQuote] | None = None
    ) -> Accounting:
        if loaded is None:
            loaded = self.loaded_quotes()
        accounting = reconcile(published, loaded, self.dead_letters())
        return self._with_earlier_rows(accounting)

    def _with_earlier_rows(self, accounting: Accounting) -> Accounting:
        """What reconcile left over, less the quotes a row from before the run holds. Only a
        quote of an earlier moment can have one: the messages still in flight, asked about at
        every poll of a run, are not looked up."""
        asked = {
            message.event_id: datetime.fromtimestamp(message.event_ts_ms / 1000, tz=UTC)
            for message in accounting.unaccounted
            if message.event_id is not None
            and message.event_ts_ms is not None
            and message.event_ts_ms < self._since_ms
        }
        if self._earlier is None or not asked:
            return accounting
        stored = self._earlier.stored_quote_ids(asked)
        left = tuple(m for m in accounting.unaccounted if m.event_id not in stored)
        return replace(
            accounting,
            loaded=accounting.loaded + len(accounting.unaccounted) - len(left),
            unaccounted=left,
        )

    def wait_until_accounted(
        self,
        tap: TopicTap,
        timeout_s: float,
        expected: int = 0,
        report: Callable[[Accounting], None] = lambda _: None,
        poll_s: float = 2.0,
    ) -> Accounting:
        """Until every message the tap has seen (at least `expected` of them, and no new one
        since the last look) is in one of the tables, or `timeout_s` has passed."""
        deadline = time.monotonic() + timeout_s
        seen = -1
        while True:
            published = tap.published()
            accounting = self.account(published)
            settled = len(published) == seen and len(published) >= expected
            if (settled and not accounting.unaccounted) or time.monotonic() > deadline:
                return accounting
            if accounting.unaccounted:
                report(accounting)
            seen = len(published)
            time.sleep(poll_s)


def reconcile(
    published: Sequence[PublishedMessage],
    loaded: Sequence[LoadedQuote],
    dead_letters: Mapping[str, str],
) -> Accounting:
    """Each published message in exactly one place: a dead letter (by its message id, or for
    a quote BigQuery refused, by that row's id), else a row of `quotes` (by event_id)."""
    loaded_ids: Counter[str] = Counter(quote.event_id for quote in loaded)
    reasons: Counter[str] = Counter()
    loaded_messages = dead_lettered = 0
    unaccounted = []
    for message in published:
        reason = dead_letters.get(message.message_id)
        if reason is None and message.event_id is not None:
            reason = dead_letters.get(refused_row_id(QUOTES.name, message.event_id))
        if reason is not None:
            dead_lettered += 1
            reasons[reason] += 1
        elif message.event_id is not None and message.event_id in loaded_ids:
            loaded_messages += 1
        else:
            unaccounted.append(message)
    return Accounting(
        published=len(published),
        loaded=loaded_messages,
        dead_lettered=dead_lettered,
        unaccounted=tuple(unaccounted),
        duplicate_rows=sum(count - 1 for count in loaded_ids.values()),
        dead_letter_reasons=dict(reasons),
    )


def latencies(
    published: Sequence[PublishedMessage], loaded: Sequence[LoadedQuote]
) -> dict[str, list[float]]:
    """Seconds from the tick (event time) and from the publish to the row in `quotes`."""
    publish_ms = {m.event_id: m.publish_ms for m in published if m.event_id}
    return {
        "tick -> row": [(q.ingest_ms - q.event_ms) / 1000 for q in loaded],
        "publish -> row": [
            (q.ingest_ms - publish_ms[q.event_id]) / 1000
            for q in loaded
            if q.event_id in publish_ms
        ],
    }
