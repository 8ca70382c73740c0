"""The extract pipeline: poll the API for each pair in parallel, publish every quote once."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from quotestream.adapters.api_client import SourceUnavailable
from quotestream.beam.parse import NAMESPACE
from quotestream.domain.quote import format_ts, now_ms
from quotestream.domain.validation import is_event_ts
from quotestream.ports import Publisher, PublishFuture, QuoteSource

log = logging.getLogger(__name__)

_MAX_CATCH_UP_MS = 3_600_000
SourceFactory = Callable[[Callable[[str], None]], QuoteSource]


class FetchNewQuotesFn(beam.DoFn):
    """(pair, tick) -> the pair's quotes since its cursor, read from the API's history.

    The cursor (keyed state) is the end of the last interval fetched, so each quote is
    fetched once; a failed fetch leaves it where it was and the next tick covers the gap.
    """

    CURSOR = ReadModifyWriteStateSpec("cursor_ms", VarIntCoder())
    CURSOR_STATE = beam.DoFn.StateParam(CURSOR)
    # Failed fetches since the last good one: an outage is logged once when it ends.
    FAILURES = ReadModifyWriteStateSpec("failed_fetches", VarIntCoder())
    FAILURES_STATE = beam.DoFn.StateParam(FAILURES)

    def __init__(
        self,
        source_factory: SourceFactory,
        lag_ms: int,
        first_lookback_ms: int,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._factory = source_factory
        self._clock = clock
        self._lag_ms = lag_ms
        self._first_lookback_ms = first_lookback_ms
        self.fetched = Metrics.counter(NAMESPACE, "fetched_quotes")
        self.skipped = Metrics.counter(NAMESPACE, "catch_up_truncated")
        self.outcomes = {
            outcome: Metrics.counter(NAMESPACE, f"fetch_{outcome}")
            for outcome in ("ok", "retry", "failed")
        }

    def setup(self) -> None:
        self._source = self._factory(lambda outcome: self.outcomes[outcome].inc())

    def process(
        self, element: tuple[str, Any], cursor: Any = CURSOR_STATE, failures: Any = FAILURES_STATE
    ) -> Iterator[dict[str, str]]:
        pair, _ = element
        end = self._clock() - self._lag_ms
        start = cursor.read() or end - self._first_lookback_ms
        if end <= start:
            return
        skipped_from = None
        if end - start > _MAX_CATCH_UP_MS:
            # After a long outage, catch up the last hour and leave the rest to the backfill
            # DAG: one fetch of days of history would stall every other pair's polling.
            skipped_from, start = start, end - _MAX_CATCH_UP_MS
        try:
            quotes = list(self._source.history(pair, start, end))
        except SourceUnavailable as error:
            # Counted by the source; the cursor stays, so the next poll retries the gap.
            failed = (failures.read() or 0) + 1
            failures.write(failed)
            if failed == 1:  # the rest are told when the source is back
                log.warning("%s: fetch since %s failed: %s", pair, format_ts(start), error)
            return
        cursor.write(end)
        self.fetched.inc(len(quotes))
        if skipped_from is not None:
            self.skipped.inc()
            log.warning(
                "%s: [%s, %s) skipped, more than an hour behind; backfill it",
                pair,
                format_ts(skipped_from),
                format_ts(start),
            )
        failed = failures.read()
        if failed:
            failures.clear()
            log.info(
                "%s: source back after %d failed fetches; caught up %d quotes of [%s, %s)",
                pair,
                failed,
                len(quotes),
                format_ts(start),
                format_ts(end),
            )
        yield from quotes

    def teardown(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None:
            source.close()


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

    def process(self, quote: dict[str, str]) -> None:
        attributes: dict[str, str] = {
            key: quote[key] for key in ("pair", "event_id") if isinstance(quote.get(key), str)
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
    ) -> None:
        super().__init__()
        self._pairs = list(pairs)
        self._fetch = FetchNewQuotesFn(source_factory, lag_ms, first_lookback_ms, clock)
        self._publish = PublishQuotesFn(publisher_factory, topic, ordered)

    def expand(self, ticks: PCollection[Any]) -> PCollection[Any]:
        pairs = self._pairs
        return (
            ticks
            | "EachPair" >> beam.FlatMap(lambda tick: [(pair, tick) for pair in pairs])
            | "FetchNew" >> beam.ParDo(self._fetch)
            | "Publish" >> beam.ParDo(self._publish)
        )
