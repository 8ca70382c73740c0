"""The replay DAG reads a long range in chunks of QUOTESTREAM_REPLAY_MAX_RANGE_H hours, one
after another, and reports their sum; the task runs here over a replay service that records
what it was asked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.services.replay import ReplayCounts

pytestmark = pytest.mark.unit


class RecordingReplay:
    def __init__(self) -> None:
        self.ranges: list[tuple[datetime, datetime]] = []

    def run(
        self, start: datetime, end: datetime, reasons: Any, run_id: str, *, dry_run: bool
    ) -> ReplayCounts:
        self.ranges.append((start, end))
        return ReplayCounts(3, 1, 1, 1, 0, dry_run=dry_run)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> RecordingReplay:
    recording = RecordingReplay()
    monkeypatch.setattr(bootstrap, "build_replay_service", lambda settings: recording)
    monkeypatch.setenv("QUOTESTREAM_REPLAY_MAX_RANGE_H", "2")
    return recording


def replay(dagbag: Any, start: str, end: str) -> str:
    task = dagbag.get_dag("quotestream_replay_dead_letters").task_dict["replay"]
    params = {"start": start, "end": end, "reasons": [], "dry_run": False}
    result: str = task.python_callable(params=params, run_id="manual__test")
    return result


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 1, hour, minute, tzinfo=UTC)


def test_a_range_longer_than_the_limit_is_replayed_in_chunks_one_after_another(
    dagbag: Any, service: RecordingReplay
) -> None:
    result = replay(dagbag, "2026-03-01T00:00:00Z", "2026-03-01T05:30:00")
    assert service.ranges == [(at(0), at(2)), (at(2), at(4)), (at(4), at(5, 30))]
    assert result == str(ReplayCounts(9, 3, 3, 3, 0, dry_run=False))


def test_a_range_within_the_limit_is_one_replay(dagbag: Any, service: RecordingReplay) -> None:
    replay(dagbag, "2026-03-01T01:00:00Z", "2026-03-01T03:00:00Z")
    assert service.ranges == [(at(1), at(3))]


def test_an_empty_range_is_refused(dagbag: Any, service: RecordingReplay) -> None:
    with pytest.raises(ValueError, match="is not after start"):
        replay(dagbag, "2026-03-01T03:00:00Z", "2026-03-01T03:00:00Z")
    assert service.ranges == []
