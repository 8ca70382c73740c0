"""The extract pipeline: poll the API for each pair in parallel, publish every quote once."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam
from apache_beam.coders import TupleCoder, VarIntCoder
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import format_ts, now_ms
from quotestream.domain.validation import is_event_ts
from quotestream.ports import Publisher, PublishFuture, QuoteSource
from quotestream.ports.queries import ResumePoints
from quotestream.ports.sources import UnreadableLine
from quotestream.services.source_chain import (
    PRIMARY,
    ChainState,
    Fetched,
    Link,
    SourceChain,
    Window,
)

log = logging.getLogger(__name__)

SourceFactory = Callable[[Callable[[str], None]], QuoteSource]
# A failed read of the resume points is tried again this much later (no pair is fetched
# before its resume point is known: fetching from a guess could skip quotes).
RESUME_RETRY_MS = 10_000
# One read of the resume points serves every pair that starts within this much of it: the
# newest stored event time only grows, so an older answer resumes earlier, never later.
RESUME_REUSE_MS = 60_000
# How much further back than the look-back the resume read looks, only to tell a pair whose
# newest stored quote is older than the look-back (a gap for the backfill, logged) from a new
# pair.
TOLD_APART_MS = 86_400_000
_FETCH_OUTCOMES = ("ok", "retry", "failed")


@dataclass(frozen=True, slots=True)
class Fallback:
    """The source a pair is read from while its primary has been failing or silent for
    `after_ms` (services.source_chain), the primary being asked again every
    `probe_every_ms`; `name` and `primary_name` are their quotes' `source`."""

    factory: SourceFactory
    name: str
    primary_name: str
    after_ms: int
    probe_every_ms: int

    def chain(self, primary: QuoteSource, fallback: QuoteSource) -> SourceChain:
        links = [Link(self.primary_name, primary), Link(self.name, fallback)]
        return SourceChain(links, self.after_ms, self.probe_every_ms)


class ResumeFrom:
    """Where each pair's cursor starts when a job starts (its keyed state is empty).

    With `resume_points`, at the pair's newest event time stored in `quotes` by the first of
    the extract's own `sources` (its primary) less `overlap_ms`, but after the newest of the
    others (its fallback: a quote the primary serves again there would store an instant from
    two sources, and a stream has nothing to serve again), no further back than
    `max_lookback_ms` (older gaps are the backfill's); a pair with nothing stored in the
    look-back starts `first_lookback_ms` back, as a new pair (with a warning and
    `catch_up_truncated` counted when it has older quotes: the gap since is the backfill's).
    Without (an extract with no warehouse, or reading a stream, which has no past to resume
    from), every pair starts `first_lookback_ms` back. One read serves the pairs that start
    together; a failed one is tried again later."""

    def __init__(
        self,
        resume_points: Callable[[], ResumePoints] | None,
        *,
        sources: Sequence[str],
        max_lookback_ms: int,
        overlap_ms: int,
        first_lookback_ms: int,
    ) -> None:
        self._factory = resume_points
        self._sources = tuple(sources)
        self.max_lookback_ms = max_lookback_ms
        self._overlap_ms = overlap_ms
        self._first_lookback_ms = first_lookback_ms
        self._points: ResumePoints | None = None
        self._newest: dict[str, int] = {}
        self._elsewhere: dict[str, int] = {}
        self._read_at: int | None = None
        self._retry_at: int | None = None
        self.truncated = Metrics.counter(NAMESPACE, "catch_up_truncated")

    def start(self, pair: str, end_ms: int) -> int | None:
        """The cursor's first value for `pair` fetching up to `end_ms`. Raises ResumeUnknown
        when a read of the stored quotes fails; returns None while the next read is not due
        yet (RESUME_RETRY_MS after a failed one)."""
        if self._factory is None:
            return end_ms - self._first_lookback_ms
        floor = end_ms - self.max_lookback_ms
        if self._read_at is None or end_ms - self._read_at > RESUME_REUSE_MS:
            if self._retry_at is not None and end_ms < self._retry_at:
                return None
            try:
                if self._points is None:
                    self._points = self._factory()
                # Two days back, so a pair stored before the look-back only is told apart
                # from a new one (the look-back's partitions and a day more are read).
                self._read_newest(self._points, floor - TOLD_APART_MS)
            except Exception as error:  # BigQuery unreachable, refusing, timing out
                self._retry_at = end_ms + RESUME_RETRY_MS
                log.warning(
                    "cannot read where to resume (%s: %s); no pair is fetched until it can",
                    type(error).__name__,
                    error,
                )
                raise ResumeUnknown from error
            self._read_at, self._retry_at = end_ms, None
        own, elsewhere = self._newest.get(pair), self._elsewhere.get(pair)
        newest = max(own or 0, elsewhere or 0) or None
        if newest is None:
            return end_ms - self._first_lookback_ms
        if newest < floor:
            self.truncated.inc()
            log.warning(
                "%s: its newest stored quote (%s) is older than the look-back (%d s): it starts "
                "%d s back; the gap since is the backfill's",
                pair,
                format_ts(newest),
                self.max_lookback_ms // 1000,
                self._first_lookback_ms // 1000,
            )
            return end_ms - self._first_lookback_ms
        after_elsewhere = elsewhere + 1 if elsewhere is not None else floor
        return max((own or floor) - self._overlap_ms, after_elsewhere, floor)

    def _read_newest(self, points: ResumePoints, since_ms: int) -> None:
        primary, *others = self._sources
        self._newest = points.newest_event_per_pair(since_ms, primary)
        self._elsewhere = {}
        for source in others:
            for pair, moment in points.newest_event_per_pair(since_ms, source).items():
                self._elsewhere[pair] = max(moment, self._elsewhere.get(pair, moment))

    def close(self) -> None:
        if self._points is not None:
            self._points.close()
            self._points = None


class ResumeUnknown(RuntimeError):
    """The stored quotes could not be read; the pair waits for its resume point."""


class FetchNewQuotesFn(beam.DoFn):
    """(pair, tick) -> the pair's quotes since its cursor, read from a source's history.

    The cursor (keyed state) is the end of the last interval fetched, so each quote is
    fetched once; a failed fetch leaves it where it was and the next tick covers the gap.
    A job starts with no state: each pair's cursor then starts where `ResumeFrom` says, at
    what `quotes` already holds, so a cancelled and relaunched job skips nothing however
    long the relaunch took (within the look-back). No fetch spans more than the resume
    overlap: a job cancelled while a fetch's quotes are being published leaves no hole older
    than the overlap before its newest stored quote, which the next job fetches again.

    Each window is served by one source of the pair's chain (services.source_chain): the
    primary, or while it fails or is silent, the `fallback`; every switch is logged and
    counted (source_failovers, source_failbacks).

    A stream's unreadable lines are handed over by one pair's fetch (`unreadable_pair`), for
    the same window as its quotes: a retried bundle gets them again, never a second pair.
    """

    CURSOR = ReadModifyWriteStateSpec("cursor_ms", VarIntCoder())
    CURSOR_STATE = beam.DoFn.StateParam(CURSOR)
    # The pair's place in the source chain and its failed fetches in a row (an outage is
    # logged once when it ends): services.source_chain.ChainState, kept with the pair so
    # that whichever worker fetches it judges the primary alike.
    CHAIN = ReadModifyWriteStateSpec("source_chain", TupleCoder([VarIntCoder()] * 6))
    CHAIN_STATE = beam.DoFn.StateParam(CHAIN)

    def __init__(
        self,
        source_factory: SourceFactory,
        lag_ms: int,
        resume: ResumeFrom,
        clock: Callable[[], int] = now_ms,
        unreadable_pair: str | None = None,
        max_fetch_ms: int | None = None,
        fallback: Fallback | None = None,
    ) -> None:
        self._sources = (source_factory, fallback)
        self._unreadable_pair = unreadable_pair
        self._max_fetch_ms = max_fetch_ms
        self._clock = clock
        self._lag_ms = lag_ms
        self._resume = resume
        self.fetched = Metrics.counter(NAMESPACE, "fetched_quotes")
        self.skipped = Metrics.counter(NAMESPACE, "catch_up_truncated")
        self.resumed = Metrics.counter(NAMESPACE, "resumed_pairs")
        self.resume_failed = Metrics.counter(NAMESPACE, "resume_failed")
        # Their difference is how many pairs read their fallback now (what the alert judges).
        self.failovers = Metrics.counter(NAMESPACE, "source_failovers")
        self.failbacks = Metrics.counter(NAMESPACE, "source_failbacks")
        self.outcomes = {
            outcome: Metrics.counter(NAMESPACE, f"fetch_{outcome}") for outcome in _FETCH_OUTCOMES
        }

    def setup(self) -> None:
        primary, fallback = self._sources
        if fallback is None:
            self._chain = SourceChain([Link("", primary(self._count))], 0, 0)
        else:
            self._chain = fallback.chain(primary(self._count), fallback.factory(self._count))
        for stream in self._chain.streams:
            # Asking opens the connection: a stream fallback buffers from now on, ready to
            # take over at once, even from a primary that never answered.
            stream.latest([])

    def _fetch_window(self, pair: str, window: Window, kept: ChainState, chain: Any) -> Fetched:
        fetched = self._chain.fetch(pair, window, kept)
        if fetched.state == ChainState():
            chain.clear()
        else:
            chain.write(fetched.state.as_tuple())
        switch = fetched.switch
        if switch is not None:
            back = switch.source == self._chain.links[PRIMARY].name
            (self.failbacks if back else self.failovers).inc()
            log.warning(
                "%s: switched from %s to %s: %s",
                pair,
                switch.previous,
                switch.source,
                switch.reason,
            )
        return fetched

    def _count(self, outcome: str) -> None:
        """A source's outcome: a fetch's (fetch_ok, fetch_retry, fetch_failed), or an event
        of its own, counted under its name (a stream's reconnects, the lines it drops)."""
        counter = self.outcomes.get(outcome)
        if counter is None:
            counter = self.outcomes[outcome] = Metrics.counter(NAMESPACE, outcome)
        counter.inc()

    def process(
        self, element: tuple[str, Any], cursor: Any = CURSOR_STATE, chain: Any = CHAIN_STATE
    ) -> Iterator[dict[str, str] | UnreadableLine]:
        pair, _ = element
        now = self._clock()
        end = now - self._lag_ms
        start = cursor.read()
        if start is None:
            try:
                start = self._resume.start(pair, end)
            except ResumeUnknown:
                self.resume_failed.inc()
                return
            if start is None:  # a read failed lately: not asked again yet
                return
            # Kept at once: a failed first fetch retries from here, not from a new guess.
            cursor.write(start)
            self.resumed.inc()
            log.info("%s: starts at %s", pair, format_ts(start))
        if end <= start:
            return
        skipped_from = None
        max_lookback_ms = self._resume.max_lookback_ms
        if end - start > max_lookback_ms:
            # After a long outage, catch up the look-back and leave the rest to the backfill
            # DAG: one fetch of days of history would stall every other pair's polling.
            skipped_from, start = start, end - max_lookback_ms
        if self._max_fetch_ms:
            # A catch-up goes an overlap at a time (the next ticks fetch the rest).
            end = min(end, start + self._max_fetch_ms)
        kept = ChainState(*chain.read() or ())
        if skipped_from is not None and kept.unserved_from_ms:
            # Neither is asked for what the look-back left to the backfill.
            kept = replace(kept, unserved_from_ms=max(kept.unserved_from_ms, start))
        fetched = self._fetch_window(pair, Window(start, end, now), kept, chain)
        quotes = fetched.quotes
        if quotes is None:
            # Counted by the source; the cursor stays, so the next poll retries the gap.
            if fetched.state.failed_fetches == 1:  # the rest are told when the source is back
                log.warning("%s: fetch since %s failed: %s", pair, format_ts(start), fetched.error)
            return
        if pair == self._unreadable_pair:
            for stream in self._chain.streams:
                yield from stream.unreadable(start, end)
        cursor.write(end)
        self.fetched.inc(len(quotes))
        if skipped_from is not None:
            self.skipped.inc()
            log.warning(
                "%s: [%s, %s) skipped, further behind than the look-back; backfill it",
                pair,
                format_ts(skipped_from),
                format_ts(start),
            )
        if kept.failed_fetches and fetched.switch is None:  # a switch said it already
            log.info(
                "%s: source back after %d failed fetches; caught up %d quotes of [%s, %s)",
                pair,
                kept.failed_fetches,
                len(quotes),
                format_ts(start),
                format_ts(end),
            )
        yield from quotes

    def teardown(self) -> None:
        chain = getattr(self, "_chain", None)
        if chain is not None:
            chain.close()
        self._resume.close()


class PublishQuotesFn(beam.DoFn):
    """Publishes each quote as served, with routing attributes; a bundle completes only once
    Pub/Sub has acknowledged all of it, so a failure retries rather than loses."""

    def __init__(
        self, publisher_factory: Callable[[], Publisher], topic: str, ordered: bool = False
    ) -> None:
        self._factory = publisher_factory
        self._topic = topic
        self._ordered = ordered
        self.published = Metrics.counter(NAMESPACE, "published")

    def setup(self) -> None:
        self._publisher = self._factory()

    def start_bundle(self) -> None:
        self._pending: list[PublishFuture] = []

    def process(self, quote: dict[str, str] | UnreadableLine) -> None:
        if isinstance(quote, UnreadableLine):
            # Published as received: the load's gate dead-letters it with its reason, and the
            # dead letter keeps the source's in its attributes.
            self._pending.append(
                self._publisher.publish(self._topic, quote.payload, quote.attributes(), "")
            )
            return
        # Only what is there: Dataflow deduplicates by the event_id attribute, and one ""
        # would make every quote without an id one message.
        attributes: dict[str, str] = {
            key: value
            for key in ("pair", "event_id")
            if isinstance(value := quote.get(key), str) and value
        }
        # Dataflow's Pub/Sub source stamps event time from this attribute and stops the load
        # on one it cannot parse (no dead letter there). Without it the message keeps its
        # publish time and the gate judges the payload.
        if is_event_ts(quote.get("event_ts")):
            attributes["event_ts"] = quote["event_ts"]
        data = json.dumps(quote, separators=(",", ":")).encode()
        key = quote["pair"] if self._ordered else ""
        self._pending.append(self._publisher.publish(self._topic, data, attributes, key))

    def finish_bundle(self) -> None:
        for future in self._pending:
            future.result(timeout=120)
        self.published.inc(len(self._pending))
        self._pending = []

    def teardown(self) -> None:
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.close()


class ExtractQuotes(beam.PTransform[Any, Any]):
    """ticks -> one fetch per pair per tick, in parallel across pairs -> Pub/Sub."""

    def __init__(
        self,
        pairs: Sequence[str],
        source_factory: SourceFactory,
        publisher_factory: Callable[[], Publisher],
        topic: str,
        lag_ms: int = 1000,
        first_lookback_ms: int = 5000,
        clock: Callable[[], int] = now_ms,
        ordered: bool = False,
        resume_points: Callable[[], ResumePoints] | None = None,
        max_lookback_ms: int = 3_600_000,
        resume_overlap_ms: int = 60_000,
        resume_source: str = "sim",
        fallback: Fallback | None = None,
    ) -> None:
        super().__init__()
        self._pairs = list(pairs)
        resume = ResumeFrom(
            resume_points,
            sources=[resume_source, *([fallback.name] if fallback else [])],
            max_lookback_ms=max_lookback_ms,
            overlap_ms=resume_overlap_ms,
            first_lookback_ms=first_lookback_ms,
        )
        self._fetch = FetchNewQuotesFn(
            source_factory,
            lag_ms,
            resume,
            clock,
            unreadable_pair=self._pairs[0] if self._pairs else None,
            # An overlap of 0 caps nothing (and would stop every fetch).
            max_fetch_ms=resume_overlap_ms or None,
            fallback=fallback,
        )
        self._publish = PublishQuotesFn(publisher_factory, topic, ordered)

    def expand(self, ticks: PCollection[Any]) -> PCollection[Any]:
        pairs = self._pairs
        return (
            ticks
            | "EachPair" >> beam.FlatMap(lambda tick: [(pair, tick) for pair in pairs])
            | "FetchNew" >> beam.ParDo(self._fetch)
            | "Publish" >> beam.ParDo(self._publish)
        )
