"""An in-memory ResumePoints (ports/queries.py): the newest stored event time per pair."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InMemoryResumePoints:
    """What `quotes` would answer, from a map pair -> stored event times; counts its reads
    and can be made to fail like an unreachable BigQuery."""

    stored: dict[str, list[int]] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)
    failing: bool = False

    def newest_event_per_pair(self, since_ms: int) -> dict[str, int]:
        self.reads.append(since_ms)
        if self.failing:
            raise ConnectionError("BigQuery does not answer")
        newest = {
            pair: max((t for t in times if t >= since_ms), default=None)
            for pair, times in self.stored.items()
        }
        return {pair: t for pair, t in newest.items() if t is not None}

    def close(self) -> None:
        pass


# Beam pickles DoFns; they find their fake again by name.
_SHARED: dict[str, InMemoryResumePoints] = {}


def shared_resume_points(name: str) -> InMemoryResumePoints:
    return _SHARED.setdefault(name, InMemoryResumePoints())
