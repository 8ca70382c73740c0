"""A streaming source's unreadable lines through the extract: published as received, with the
source's reason as attributes, for the load's gate to dead-letter."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import apache_beam as beam
import pytest

from quotestream.beam.extract import ExtractQuotes
from quotestream.domain import PAIR_CATALOG, InvalidQuote, parse_quote
from quotestream.domain.market import MarketSimulator
from quotestream.ports.sources import QuoteStream, UnreadableLine
from tests.support.fakes import shared_publisher
from tests.support.pipelines import direct_pipeline

pytestmark = pytest.mark.unit

NOW = 1_795_000_000_000
LINE = UnreadableLine(b'{"type":"PRI', "oanda", "cut_line", "the connection ended mid-line")


# The windows each pair's fetch asked unreadable lines for, by pair.
ASKED: list[tuple[int, int]] = []


class FakeStream:
    """EUR-USD's quotes of the simulator, and one unreadable line, received at NOW - 1 s."""

    def __init__(self, on_outcome: Any) -> None:
        market = MarketSimulator(5, PAIR_CATALOG)
        self.quotes = [
            q.to_dict() for _, q in market.quotes_between(PAIR_CATALOG["EUR-USD"], NOW - 2000, NOW)
        ]

    def history(self, pair: str, start_ms: int, end_ms: int) -> Any:
        received = start_ms <= NOW - 1000 < end_ms
        return iter(self.quotes if received and pair == "EUR-USD" else [])

    def latest(self, pairs: Any) -> list[dict[str, str]]:
        return []

    def unreadable(self, start_ms: int, end_ms: int) -> list[UnreadableLine]:
        ASKED.append((start_ms, end_ms))
        return [LINE] if start_ms <= NOW - 1000 < end_ms else []

    def close(self) -> None:
        pass


def test_an_unreadable_line_is_published_as_received_with_the_sources_reason() -> None:
    assert isinstance(FakeStream(None), QuoteStream)
    name = f"stream-{uuid.uuid4()}"
    ASKED.clear()
    with direct_pipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create([0])
            | ExtractQuotes(
                ["EUR-USD", "USD-BRL", "BTC-USD"],
                FakeStream,
                partial(shared_publisher, name),
                "quotes",
                lag_ms=0,
                clock=lambda: NOW,
            )
        )
    messages = shared_publisher(name).messages
    raw = [m for m in messages if m.data == LINE.payload]
    # Handed over by one pair's fetch, for its window (not once per pair).
    assert ASKED == [(NOW - 5000, NOW)]
    assert len(raw) == 1
    assert raw[0].attributes == {
        "source": "oanda",
        "source_reason": "cut_line",
        "source_detail": "the connection ended mid-line",
    }
    with pytest.raises(InvalidQuote) as refused:
        parse_quote(raw[0].data, raw[0].attributes)
    assert refused.value.reason == "malformed_json"
    quotes = [parse_quote(m.data, m.attributes, now_ms=NOW) for m in messages if m is not raw[0]]
    assert len(quotes) == 4  # EUR-USD ticks every 500 ms
