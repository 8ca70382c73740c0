"""The source chain's switching, on sources that tick every 100 ms and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from quotestream.domain.quote import format_ts
from quotestream.ports.sources import SourceUnavailable, UnreadableLine
from quotestream.services.source_chain import (
    FALLBACK,
    PRIMARY,
    ChainState,
    Link,
    SourceChain,
    Window,
)

pytestmark = pytest.mark.unit

TICK_MS = 100
AFTER_MS, PROBE_MS = 3_000, 5_000
T0 = 1_800_000_000_000
RECEIPT_MS = 250


@dataclass
class Ticking:
    """A quote every TICK_MS, stamped with its source; `down` raises, `silent` answers nothing."""

    name: str
    down: bool = False
    silent: bool = False
    asked: list[tuple[int, int]] = field(default_factory=list)

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        self.asked.append((start_ms, end_ms))
        if self.down:
            raise SourceUnavailable(f"{self.name} is down")
        return iter([] if self.silent else self.ticks(pair, start_ms, end_ms))

    def ticks(self, pair: str, start_ms: int, end_ms: int) -> list[dict[str, str]]:
        first = -(-start_ms // TICK_MS) * TICK_MS
        return [
            {"pair": pair, "source": self.name, "event_ts": format_ts(t), "event_ms": str(t)}
            for t in range(first, end_ms, TICK_MS)
        ]

    def latest(self, pairs: object) -> list[dict[str, str]]:
        raise AssertionError("the extract reads history")

    def close(self) -> None:
        pass


@dataclass
class TickingStream(Ticking):
    """A stream: it serves by the moment of receipt, each quote RECEIPT_MS after its event
    time, and forgets what it received before a window it is asked for."""

    forgotten_before: int = 0

    def ticks(self, pair: str, start_ms: int, end_ms: int) -> list[dict[str, str]]:
        self.forgotten_before = max(self.forgotten_before, start_ms)
        start = max(start_ms, self.forgotten_before)
        return super().ticks(pair, start - RECEIPT_MS, end_ms - RECEIPT_MS)

    def unreadable(self, start_ms: int, end_ms: int) -> list[UnreadableLine]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Extract:
    """The extract's use of a chain: a window per poll from the cursor, which stays where it
    is when no source served the window."""

    def __init__(self, primary: Ticking, fallback: Ticking | None = None) -> None:
        links = [Link(source.name, source) for source in (primary, fallback) if source]
        self.chain = SourceChain(links, AFTER_MS, PROBE_MS)
        self.clock = Clock()
        self.cursor = T0
        self.state = ChainState()
        self.stored: list[dict[str, str]] = []
        self.switches: list[tuple[int, str]] = []

    def poll(self, for_ms: int, every_ms: int = 500) -> None:
        for _ in range(for_ms // every_ms):
            self.clock.now += every_ms
            window = Window(self.cursor, self.clock.now, self.clock.now)
            fetched = self.chain.fetch("EUR-USD", window, self.state)
            self.state = fetched.state
            if fetched.switch:
                self.switches.append((self.clock.now, fetched.switch.source))
            if fetched.quotes is not None:
                self.stored += fetched.quotes
                self.cursor = self.clock.now

    def every_instant_once(self) -> bool:
        """Every tick from T0 on, once, up to the cursor (less what a stream has not received
        yet: a quote arrives RECEIPT_MS after its event)."""
        instants = [int(q["event_ms"]) for q in self.stored]
        caught_up = bool(instants) and instants[-1] >= self.cursor - RECEIPT_MS - TICK_MS
        return caught_up and instants == list(range(T0, instants[-1] + 1, TICK_MS))


@pytest.mark.parametrize("trouble", ["down", "silent"])
def test_a_failing_or_silent_primary_hands_over_and_takes_back_every_instant_once(
    trouble: str,
) -> None:
    api, feed = Ticking("sim"), TickingStream("oanda")
    extract = Extract(api, feed)

    extract.poll(10_000)
    setattr(api, trouble, True)
    extract.poll(20_000)
    setattr(api, trouble, False)
    extract.poll(20_000)

    assert extract.every_instant_once()
    down_at, up_at = T0 + 10_000, T0 + 30_000
    failover, failback = extract.switches
    assert failover[1] == "oanda"
    assert failover[0] - down_at <= AFTER_MS + 500
    assert failback[1] == "sim"
    assert failback[0] - up_at <= PROBE_MS + 500
    by_source = {q["source"] for q in extract.stored if down_at <= int(q["event_ms"]) < up_at}
    # The trouble's first seconds waited for the switch, then came from the feed from where
    # the API failed or fell silent (not from the switch on): nothing of it from the API.
    assert by_source == {"oanda"}
    assert extract.stored[-1]["source"] == "sim"


def test_while_on_the_fallback_the_primary_is_asked_only_every_probe_interval() -> None:
    api, feed = Ticking("sim", down=True), TickingStream("oanda")
    extract = Extract(api, feed)
    extract.poll(AFTER_MS + 1_000)
    assert extract.state.active == FALLBACK
    asked_before = len(api.asked)

    extract.poll(3 * PROBE_MS)

    # Switched at 3.5 s: asked again at 8.5, 13.5 and 18.5 s.
    assert len(api.asked) - asked_before == 3
    assert extract.state.active == FALLBACK


def test_a_stream_fallback_forgets_what_the_primary_served_and_stays_connected() -> None:
    api, feed = Ticking("sim"), TickingStream("oanda")
    extract = Extract(api, feed)
    extract.poll(5_000)

    assert {q["source"] for q in extract.stored} == {"sim"}
    assert feed.forgotten_before == extract.cursor - 500
    assert extract.state == ChainState()


def test_without_a_fallback_a_failing_primary_leaves_the_window_unserved() -> None:
    api = Ticking("sim", down=True)
    extract = Extract(api)
    extract.poll(10_000)

    assert extract.stored == []
    assert extract.switches == []
    assert extract.state.active == PRIMARY
    assert extract.state.failed_fetches == 20
    api.down = False
    extract.poll(1_000)
    assert extract.state.failed_fetches == 0
    assert [int(q["event_ms"]) for q in extract.stored] == list(range(T0, extract.cursor, TICK_MS))


def test_a_failing_fallback_leaves_the_window_unserved_until_one_answers() -> None:
    api, feed = Ticking("sim", down=True), TickingStream("oanda", down=True)
    extract = Extract(api, feed)
    extract.poll(10_000)
    assert extract.stored == []

    feed.down = False
    extract.poll(1_000)

    assert [source for _, source in extract.switches] == ["oanda"]
    assert extract.every_instant_once()


def test_a_silence_of_both_is_a_calm_market_and_the_primary_keeps_the_pair() -> None:
    api, feed = Ticking("sim"), TickingStream("oanda")
    extract = Extract(api, feed)
    extract.poll(5_000)
    api.silent = feed.silent = True
    extract.poll(10_000)
    assert extract.switches == []

    feed.silent = False
    extract.poll(AFTER_MS)
    # The feed speaks: it takes over the whole silence, from where the API fell silent.
    assert [source for _, source in extract.switches] == ["oanda"]
    assert extract.every_instant_once()


def test_a_chain_is_a_primary_and_at_most_one_fallback() -> None:
    with pytest.raises(ValueError, match="at most one fallback"):
        SourceChain([], AFTER_MS, PROBE_MS)
