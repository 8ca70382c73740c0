from __future__ import annotations

import time

import pytest

from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.services.relay import QuoteRelay, RelayClosed
from tests.support.fakes import GatedPublisher, InMemoryPublisher

pytestmark = pytest.mark.unit

MARKET = MarketSimulator(3, PAIR_CATALOG)
QUOTES = [MARKET.quote(PAIR_CATALOG["USD-BRL"], 1_795_000_000 + i) for i in range(50)]


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_every_offered_quote_is_published_once_with_its_attributes() -> None:
    publisher = InMemoryPublisher()
    relay = QuoteRelay(publisher, "quotes", capacity=100)
    relay.start()
    assert relay.offer(QUOTES)
    assert relay.close(timeout=5) == 0
    assert [m.data for m in publisher.messages] == [q.to_json() for q in QUOTES]
    assert publisher.messages[0].attributes == QUOTES[0].pubsub_attributes()
    assert publisher.messages[0].ordering_key == ""
    assert publisher.closed


def test_ordered_relay_keys_messages_by_pair() -> None:
    publisher = InMemoryPublisher()
    relay = QuoteRelay(publisher, "quotes", capacity=100, ordered=True)
    relay.start()
    relay.offer(QUOTES[:3])
    relay.close(timeout=5)
    assert {m.ordering_key for m in publisher.messages} == {"USD-BRL"}


def test_a_batch_that_does_not_fit_is_refused_whole_and_nothing_is_dropped() -> None:
    publisher = GatedPublisher()
    relay = QuoteRelay(publisher, "quotes", capacity=60)
    relay.start()
    assert relay.offer(QUOTES[:40])
    assert not relay.offer(QUOTES[40:] + QUOTES[:20])  # 40 + 30 > 60: none of the 30
    assert relay.offer(QUOTES[40:50])
    assert not relay.offer(QUOTES[:20])
    assert relay.stats().accepted == 50
    publisher.release()
    assert relay.close(timeout=5) == 0
    assert len(publisher.messages) == 50


def test_failed_publishes_are_retried_until_they_succeed() -> None:
    publisher = InMemoryPublisher(fail_next=5)
    relay = QuoteRelay(publisher, "quotes", capacity=100)
    relay.start()
    relay.offer(QUOTES[:10])
    wait_until(lambda: relay.stats().published == 10)
    stats = relay.stats()
    assert stats.publish_errors == 5
    assert sorted(m.data for m in publisher.messages) == sorted(q.to_json() for q in QUOTES[:10])
    relay.close(timeout=5)


def test_close_refuses_new_quotes_and_reports_what_it_could_not_publish() -> None:
    publisher = GatedPublisher()
    relay = QuoteRelay(publisher, "quotes", capacity=100)
    relay.start()
    relay.offer(QUOTES[:5])
    assert relay.close(timeout=0.3) == 5
    with pytest.raises(RelayClosed):
        relay.offer(QUOTES[:1])
