"""The market-data API's history as the extract reads it, from the simulator: a QuoteSource
fake whose copies (Beam makes several) share, by `name`, the count of their calls and the
windows asked."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Iterator

from quotestream.domain import PAIR_CATALOG
from quotestream.domain.market import MarketSimulator
from quotestream.ports.sources import SourceUnavailable

_CALLS: dict[str, itertools.count[int]] = {}
_WINDOWS: dict[str, list[tuple[str, int, int]]] = {}
_LOCK = threading.Lock()


class SimulatedSource:
    """`history` from MarketSimulator(seed); the calls numbered in `failing` (from 0, across
    the copies of one `name`) fail as an outage would."""

    def __init__(
        self,
        on_outcome: Callable[[str], None],
        *,
        seed: int,
        name: str = "",
        failing: Collection[int] = (),
    ) -> None:
        self.market = MarketSimulator(seed, PAIR_CATALOG)
        self.on_outcome = on_outcome
        self.name = name
        self.failing = failing

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        with _LOCK:
            call = next(_CALLS.setdefault(self.name, itertools.count()))
            _WINDOWS.setdefault(self.name, []).append((pair, start_ms, end_ms))
        if call in self.failing:
            self.on_outcome("failed")
            raise SourceUnavailable("simulated outage")
        self.on_outcome("ok")
        return iter(
            [
                q.to_dict()
                for _, q in self.market.quotes_between(PAIR_CATALOG[pair], start_ms, end_ms)
            ]
        )

    def latest(self, pairs: object) -> list[dict[str, str]]:
        raise AssertionError("extraction reads history")

    def close(self) -> None:
        pass


def calls_made(name: str) -> int:
    """How many `history` calls the copies named `name` had."""
    with _LOCK:
        return len(_WINDOWS.get(name, []))


def windows_asked(name: str) -> list[tuple[str, int, int]]:
    """(pair, start, end) of each `history` call of the copies named `name`."""
    with _LOCK:
        return list(_WINDOWS.get(name, []))
