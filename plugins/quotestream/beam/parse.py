"""The gate as a Beam step: every message leaves as a quote or as a dead-letter row."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from quotestream.beam.messages import RawMessage
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import now_ms
from quotestream.domain.rows import dead_letter_row
from quotestream.domain.validation import InvalidQuote, check_timely, parse_quote

NAMESPACE = "quotestream"
QUOTES = "quotes"
DEAD_LETTER = "dead_letter"


class ParseQuoteFn(beam.DoFn):
    def __init__(
        self, pairs: Sequence[str] | None = None, max_quote_age_ms: int | None = None
    ) -> None:
        self._pairs = tuple(pairs) if pairs else tuple(PAIR_CATALOG)
        self._max_quote_age_ms = max_quote_age_ms
        self.received = Metrics.counter(NAMESPACE, "received")
        self.parsed = Metrics.counter(NAMESPACE, "parsed")
        self.dead_lettered = Metrics.counter(NAMESPACE, "dead_lettered")

    def setup(self) -> None:
        self._catalog = {pair: PAIR_CATALOG[pair] for pair in self._pairs}

    def process(self, message: RawMessage) -> Iterator[Any]:
        self.received.inc()
        try:
            judged = message.judged
            if judged is not None and judged.pair in self._catalog:
                quote = check_timely(judged, self._max_quote_age_ms)
            else:
                quote = parse_quote(
                    message.data,
                    message.attributes,
                    pairs=self._catalog,
                    max_age_ms=self._max_quote_age_ms,
                )
        except InvalidQuote as error:
            yield self._dead_letter(message, error.reason, error.detail)
            return
        except Exception as error:  # the gate promises not to; a bug must not lose a message
            yield self._dead_letter(message, "internal_error", repr(error))
            return
        self.parsed.inc()
        yield quote

    def _dead_letter(self, message: RawMessage, reason: str, detail: str) -> TaggedOutput[str, Any]:
        self.dead_lettered.inc()
        Metrics.counter(NAMESPACE, f"dead_lettered_{reason}").inc()
        row = dead_letter_row(
            message.data,
            message.attributes,
            reason=reason,
            error=detail,
            stage="parse",
            received_ts_ms=now_ms(),
            message_id=message.message_id,
        )
        return TaggedOutput(DEAD_LETTER, row)


class ParseQuotes(beam.PTransform[Any, Any]):
    """RawMessage -> outputs `quotes` (Quote) and `dead_letter` (dead-letter rows). With
    `max_quote_age_ms` (the live load), older quotes are dead letters `too_old`."""

    def __init__(
        self, pairs: Sequence[str] | None = None, max_quote_age_ms: int | None = None
    ) -> None:
        super().__init__()
        self._pairs = pairs
        self._max_quote_age_ms = max_quote_age_ms

    def expand(self, messages: PCollection[Any]) -> Any:
        gate = ParseQuoteFn(self._pairs, self._max_quote_age_ms)
        return messages | "Gate" >> beam.ParDo(gate).with_outputs(DEAD_LETTER, main=QUOTES)
