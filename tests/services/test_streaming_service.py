from __future__ import annotations

from typing import Any

import pytest

from quotestream.domain.thresholds import AlertThresholds
from quotestream.ports.jobs import JobState, StopMode
from quotestream.ports.queries import RecentFlow
from quotestream.services.streaming import HealthLimits, RestartService, StreamingService
from tests.support.fakes import InMemoryJobRunner

pytestmark = pytest.mark.unit

NOW = 1_795_000_000.0


class FixedQueries:
    """Answers the health question with the figures a test sets."""

    def __init__(self, newest_ms: int | None, loaded: int, dead: int) -> None:
        self.flow = RecentFlow(newest_ms, loaded, dead)

    def recent_flow(self, since_ms: int, events_since_ms: int) -> RecentFlow:
        return self.flow


class FixedBacklog:
    def __init__(self, undelivered: int, oldest_s: float) -> None:
        self.value = (undelivered, oldest_s)

    def backlog(self, subscription: str) -> tuple[int, float]:
        return self.value


def service(
    runner: InMemoryJobRunner, queries: FixedQueries, backlog: Any = None
) -> StreamingService:
    return StreamingService(runner, queries, "quotes-load", backlog, clock=lambda: NOW)


def test_ensure_running_launches_each_missing_job_once() -> None:
    runner = InMemoryJobRunner()
    healthy = FixedQueries(int(NOW * 1000) - 2000, 100, 0)
    first = service(runner, healthy).ensure_running()
    second = service(runner, healthy).ensure_running()
    assert runner.launches == ["quotestream-extract", "quotestream-load"]
    assert all(outcome.startswith("launched") for outcome in first.values())
    assert all(outcome.startswith("already running") for outcome in second.values())


def test_health_names_every_problem() -> None:
    runner = InMemoryJobRunner()
    service(runner, FixedQueries(None, 0, 0)).ensure_running()
    runner.stop("quotestream-load", StopMode.CANCEL)
    report = service(
        runner, FixedQueries(int(NOW * 1000) - 900_000, 90, 10), FixedBacklog(5000, 1200)
    ).health()
    assert not report.healthy
    assert report.problems == [
        "quotestream-load is cancelled",
        "newest quote is 900 s old",
        "dead-letter ratio 10.0% over the last window",
        "the oldest unacked message is 1200 s old",
    ]
    assert report.figures["backlog_messages"] == 5000


def test_health_is_good_when_everything_flows() -> None:
    runner = InMemoryJobRunner()
    service(runner, FixedQueries(None, 0, 0)).ensure_running()
    report = service(runner, FixedQueries(int(NOW * 1000) - 3000, 500, 1)).health()
    assert report.healthy, report.problems
    assert report.figures["backlog"].startswith("not measured")


def test_freshly_launched_jobs_get_time_before_staleness_counts() -> None:
    runner = InMemoryJobRunner()
    service(runner, FixedQueries(None, 0, 0)).ensure_running()
    for name, job in list(runner.jobs.items()):
        runner.jobs[name] = type(job)(job.name, job.job_id, job.state, int(NOW * 1000) - 60_000)
    report = service(runner, FixedQueries(None, 0, 0)).health()
    assert report.healthy, report.problems
    assert report.figures["settling_after_launch"] is True


def test_restart_stops_waits_and_relaunches_under_the_same_name() -> None:
    runner = InMemoryJobRunner()
    service(runner, FixedQueries(None, 0, 0)).ensure_running()
    before, after = RestartService(runner, poll_s=0).restart("load", StopMode.DRAIN, 5)
    assert before.state is JobState.RUNNING
    assert (after.name, after.state) == ("quotestream-load", JobState.RUNNING)
    assert after.job_id != before.job_id


def test_a_plain_restart_cancels_the_extract_and_drains_the_load() -> None:
    runner = InMemoryJobRunner()
    service(runner, FixedQueries(None, 0, 0)).ensure_running()
    restarts = RestartService(runner, poll_s=0)
    restarts.restart("extract", None, 5)
    restarts.restart("load", None, 5)
    assert runner.stops == [("quotestream-extract", "cancel"), ("quotestream-load", "drain")]


@pytest.mark.parametrize(
    ("in_place", "stops"), [(True, []), (False, [("quotestream-load", "drain")])]
)
def test_an_update_replaces_in_place_where_the_runner_can_else_restarts_plainly(
    in_place: bool, stops: list[tuple[str, str]]
) -> None:
    runner = InMemoryJobRunner(in_place=in_place)
    service(runner, FixedQueries(None, 0, 0)).ensure_running()
    before, after = RestartService(runner, poll_s=0).update("load", 5)
    assert runner.stops == stops
    assert (after.state, after.job_id != before.job_id) == (JobState.RUNNING, True)


@pytest.mark.parametrize(
    ("oldest_s", "undelivered", "problems"),
    [
        (120.0, 1000, []),
        (121.0, 1000, ["the oldest unacked message is 121 s old"]),
        (60.0, 1001, ["1001 messages wait in quotes-load"]),
    ],
)
def test_the_backlog_verdict_follows_the_alert_thresholds(
    oldest_s: float, undelivered: int, problems: list[str]
) -> None:
    thresholds = AlertThresholds().overridden(
        {"max_oldest_unacked_s": 120.0, "max_undelivered_messages": 1000}
    )
    runner = InMemoryJobRunner()
    healthy = FixedQueries(int(NOW * 1000) - 2000, 100, 0)
    StreamingService(runner, healthy, "quotes-load", clock=lambda: NOW).ensure_running()
    report = StreamingService(
        runner,
        healthy,
        "quotes-load",
        FixedBacklog(undelivered, oldest_s),
        HealthLimits(thresholds),
        clock=lambda: NOW,
    ).health()
    assert report.problems == problems
