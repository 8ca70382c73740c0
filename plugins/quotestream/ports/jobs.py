"""Streaming jobs as the JobRunner port sees them: stable names, states, handles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class JobState(StrEnum):
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class StopMode(StrEnum):
    DRAIN = "drain"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    job_id: str
    state: JobState
    started_ts_ms: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InPlaceUpdate:
    """What replacing a running job in place needs: old transform names mapped to new ones
    (for steps the new code renamed), how long to wait for the runner's verdict, and the
    launch arguments of the replacement."""

    timeout_s: float
    renamed: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
