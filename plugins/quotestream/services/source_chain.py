"""Which source serves a pair's next window of quotes: the primary, or while it is unavailable
the fallback, and the primary again once it answers.

The extract fetches each pair window by window, [cursor, end), and every window is served by
one source only, so no instant is stored from two. A window the primary did not serve (it
failed, or answered nothing) is not lost: the cursor stays on a failure, and a silence is
remembered from where it began (`unserved_from_ms`), so the fallback is asked for all of it
when the chain switches. The switch comes once the primary has been failing or silent for
`failover_after_ms`; while on the fallback, the primary is asked again every
`probe_every_ms`, and the first window it serves with quotes switches back.

The chain keeps no state of its own: a pair's `ChainState` is kept by the caller (the
extract's keyed state), so every worker that fetches the pair judges it alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, replace
from typing import NamedTuple

from quotestream.domain.validation import event_ms_of
from quotestream.ports import QuoteSource
from quotestream.ports.sources import QuoteStream, SourceUnavailable

PRIMARY, FALLBACK = 0, 1


@dataclass(frozen=True, slots=True)
class ChainState:
    """A pair's place in the chain. Moments are ms; 0 means none."""

    active: int = PRIMARY
    # When (by the clock) the primary first failed or answered nothing, and the start of the
    # first window it left unserved since.
    missing_since_ms: int = 0
    unserved_from_ms: int = 0
    # While on the fallback: when the primary is asked again, and the newest event time the
    # fallback served (the primary takes over from there: a stream serves by receipt, later
    # than the event).
    next_probe_ms: int = 0
    fallback_newest_ms: int = 0
    # Windows in a row that no source served (each fetch failed).
    failed_fetches: int = 0

    def as_tuple(self) -> tuple[int, ...]:
        return astuple(self)


class Window(NamedTuple):
    """What a fetch asks for, [start_ms, end_ms), and the clock's reading when it asks."""

    start_ms: int
    end_ms: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Switch:
    pair: str
    source: str  # the one switched to
    previous: str
    reason: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """A window's outcome: its quotes (None when no source served it: the cursor stays), the
    pair's next state, the switch made (if any), and the error of a failed fetch."""

    quotes: list[dict[str, str]] | None
    state: ChainState
    switch: Switch | None = None
    error: SourceUnavailable | None = None


@dataclass(frozen=True, slots=True)
class Link:
    name: str  # the `source` its quotes are stored with
    source: QuoteSource


class SourceChain:
    """A primary and, optionally, a fallback. Without one, a window the primary fails is
    simply not served (the cursor stays, as it always did)."""

    def __init__(
        self,
        links: Sequence[Link],
        failover_after_ms: int,
        probe_every_ms: int,
    ) -> None:
        if not 1 <= len(links) <= 2:
            raise ValueError(f"a chain is a primary and at most one fallback, not {len(links)}")
        self.links = list(links)
        self._fallback = self.links[FALLBACK] if len(self.links) > 1 else None
        self._failover_after_ms = failover_after_ms
        self._probe_every_ms = probe_every_ms

    @property
    def streams(self) -> list[QuoteStream]:
        return [link.source for link in self.links if isinstance(link.source, QuoteStream)]

    def fetch(self, pair: str, window: Window, state: ChainState) -> Fetched:
        """The quotes of `pair` in `window` from the source `state` says, or the next one."""
        if state.active == FALLBACK and self._fallback is not None:
            fetched = self._on_fallback(pair, window, state)
        else:
            fetched = self._on_primary(pair, window, state)
        failed = state.failed_fetches + 1 if fetched.quotes is None else 0
        return replace(fetched, state=replace(fetched.state, failed_fetches=failed))

    def _on_primary(self, pair: str, window: Window, state: ChainState) -> Fetched:
        primary = self.links[PRIMARY]
        start_ms, end_ms, now = window
        try:
            quotes = list(primary.source.history(pair, start_ms, end_ms))
        except SourceUnavailable as error:
            failing = _missing(state, now, start_ms)
            if not self._overdue(failing, now):
                return Fetched(None, failing, error=error)
            return self._fail_over(pair, failing, window, f"failing: {error}", error)
        if quotes:
            self._trim_fallback(pair, start_ms)
            return Fetched(quotes, ChainState())
        if self._fallback is None:
            return Fetched(quotes, state)
        silent = _missing(state, now, start_ms)
        if not self._overdue(silent, now):
            return Fetched(quotes, silent)
        return self._fail_over(pair, silent, window, "silent", None)

    def _overdue(self, state: ChainState, now: int) -> bool:
        return (
            self._fallback is not None and now - state.missing_since_ms >= self._failover_after_ms
        )

    def _fail_over(
        self,
        pair: str,
        state: ChainState,
        window: Window,
        why: str,
        error: SourceUnavailable | None,
    ) -> Fetched:
        primary, fallback = self.links
        _, end_ms, now = window
        waited_s = (now - state.missing_since_ms) / 1000
        reason = f"{primary.name} {why} for {waited_s:.1f} s"
        switch = Switch(pair, fallback.name, primary.name, reason)
        on_fallback = ChainState(FALLBACK, next_probe_ms=now + self._probe_every_ms)
        # Everything the primary left unserved, from where it began: not one window lost.
        try:
            served = fallback.source.history(pair, state.unserved_from_ms, end_ms)
            quotes = _since(served, state.unserved_from_ms)
        except SourceUnavailable as fallback_error:
            return Fetched(None, state, error=error or fallback_error)
        if error is None and not quotes:
            # Both silent: a calm market, not an outage; the primary keeps the pair.
            return Fetched([], state)
        return Fetched(quotes, _served(on_fallback, quotes), switch)

    def _on_fallback(self, pair: str, window: Window, state: ChainState) -> Fetched:
        primary, fallback = self.links
        start_ms, end_ms, now = window
        if now >= state.next_probe_ms:
            back_from = state.fallback_newest_ms + 1 if state.fallback_newest_ms else start_ms
            try:
                # From the fallback's newest instant on, whichever clock stamped it.
                served = primary.source.history(pair, min(back_from, start_ms), end_ms)
                quotes = _since(served, back_from)
            except SourceUnavailable:
                quotes = []
            if quotes:
                self._trim_fallback(pair, start_ms)
                return Fetched(
                    quotes,
                    ChainState(),
                    Switch(pair, primary.name, fallback.name, f"{primary.name} answers again"),
                )
            state = replace(state, next_probe_ms=now + self._probe_every_ms)
        try:
            served = fallback.source.history(pair, start_ms, end_ms)
            quotes = _since(served, state.fallback_newest_ms + 1)
            return Fetched(quotes, _served(state, quotes))
        except SourceUnavailable as error:
            return Fetched(None, state, error=error)

    def _trim_fallback(self, pair: str, before_ms: int) -> None:
        """A stream fallback forgets what it received before the primary's window: it will
        never be asked for it. Asking also keeps it connected, ready to take over."""
        if self._fallback is not None and isinstance(self._fallback.source, QuoteStream):
            list(self._fallback.source.history(pair, before_ms, before_ms))

    def close(self) -> None:
        for link in self.links:
            link.source.close()


def _since(quotes: Iterable[dict[str, str]], start_ms: int) -> list[dict[str, str]]:
    """The quotes of an event time from `start_ms` on. A stream serves by the moment of
    receipt: a quote received after a window's start but stamped before it may be of an
    instant already served (a readable event time decides; an unreadable one goes on, for
    the gate to dead-letter)."""
    return [
        quote
        for quote in quotes
        if (moment := event_ms_of(quote.get("event_ts"))) is None or moment >= start_ms
    ]


def _served(state: ChainState, quotes: list[dict[str, str]]) -> ChainState:
    """The state once the fallback served `quotes`: its newest event time kept."""
    times = [moment for q in quotes if (moment := event_ms_of(q.get("event_ts"))) is not None]
    return replace(state, fallback_newest_ms=max([state.fallback_newest_ms, *times]))


def _missing(state: ChainState, now: int, start_ms: int) -> ChainState:
    """The state once the primary left [start_ms, ...) unserved: the first miss is kept."""
    if state.missing_since_ms:
        return state
    return replace(state, missing_since_ms=now, unserved_from_ms=start_ms)
