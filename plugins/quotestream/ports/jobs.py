"""Streaming jobs as the JobRunner port sees them: stable names, states, handles."""

from __future__ import annotations

from dataclasses import dataclass
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
