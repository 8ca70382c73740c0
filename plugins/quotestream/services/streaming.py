"""Keep the streaming jobs running, one copy each, and judge their health."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quotestream.domain.thresholds import AlertThresholds
from quotestream.ports import BacklogProbe, JobRunner
from quotestream.ports.jobs import InPlaceUpdate, Job, JobState, StopMode
from quotestream.ports.queries import HealthQueries
from quotestream.ports.views import PipelineViews

# Stable names: monitoring and "is it running?" look jobs up by name, never by a suffix.
JOB_NAMES = {"extract": "quotestream-extract", "load": "quotestream-load"}


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """The limits with a Cloud Monitoring twin are read from the same AlertThresholds the
    alert policies are built from: there is no second copy of them to drift."""

    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    # A job launched this recently has not had time to deliver: staleness is not held against it.
    launch_grace_s: float = 600.0

    @property
    def max_staleness_s(self) -> float:
        return self.thresholds.max_data_freshness_s

    @property
    def max_dead_letter_ratio(self) -> float:
        return self.thresholds.max_dead_letter_ratio

    @property
    def window_s(self) -> int:
        return int(self.thresholds.dead_letter_window_s)

    @property
    def max_oldest_unacked_s(self) -> float:
        return self.thresholds.max_oldest_unacked_s

    @property
    def max_undelivered_messages(self) -> float:
        return self.thresholds.max_undelivered_messages

    @property
    def max_on_fallback_s(self) -> float:
        return self.thresholds.max_on_fallback_s


@dataclass(frozen=True, slots=True)
class SourceWatch:
    """Where to read each pair's active source, and the source it should be: a pair whose
    newest quotes have come from another for longer than max_on_fallback_s is a problem."""

    views: PipelineViews
    primary: str


@dataclass
class HealthReport:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


class StreamingService:
    def __init__(
        self,
        runner: JobRunner,
        queries: HealthQueries,
        subscription: str,
        backlog: BacklogProbe | None = None,
        limits: HealthLimits = HealthLimits(),
        clock: Callable[[], float] = time.time,
        sources: SourceWatch | None = None,
    ) -> None:
        self._sources = sources
        self._runner = runner
        self._queries = queries
        self._subscription = subscription
        self._backlog = backlog
        self._limits = limits
        self._clock = clock

    def ensure_running(self) -> dict[str, str]:
        """Launch each job that is not running; a running one is left alone."""
        outcomes = {}
        for pipeline, name in JOB_NAMES.items():
            job = self._runner.find(name)
            if job is not None and not job.state.terminal:
                outcomes[name] = f"already {job.state} ({job.job_id})"
                continue
            launched = self._runner.launch(name, pipeline, [])
            previous = f", previous run {job.state}" if job else ""
            outcomes[name] = f"launched ({launched.job_id}{previous})"
        return outcomes

    def health(self) -> HealthReport:
        report = HealthReport()
        newest_launch_ms = 0
        for name in JOB_NAMES.values():
            job = self._runner.find(name)
            state = job.state if job else "absent"
            report.figures[f"{name}.state"] = str(state)
            if job is not None:
                newest_launch_ms = max(newest_launch_ms, job.started_ts_ms)
            if state != JobState.RUNNING:
                report.problems.append(f"{name} is {state}")
        now_ms = int(self._clock() * 1000)
        # Event times of the last day only, so the check reads a day's partitions, not the table.
        flow = self._queries.recent_flow(
            since_ms=now_ms - self._limits.window_s * 1000, events_since_ms=now_ms - 86_400_000
        )
        newest, loaded, dead = flow.newest_event_ms, flow.loaded, flow.dead_lettered
        staleness = self._clock() - newest / 1000 if newest else None
        ratio = dead / (loaded + dead) if loaded + dead else 0.0
        report.figures.update(
            staleness_s=None if staleness is None else round(staleness, 1),
            loaded_recently=loaded,
            dead_lettered_recently=dead,
            dead_letter_ratio=round(ratio, 4),
        )
        settling = now_ms - newest_launch_ms < self._limits.launch_grace_s * 1000
        report.figures["settling_after_launch"] = settling
        if not settling and (staleness is None or staleness > self._limits.max_staleness_s):
            report.problems.append(
                "no quotes loaded yet"
                if staleness is None
                else f"newest quote is {staleness:.0f} s old"
            )
        if ratio > self._limits.max_dead_letter_ratio:
            report.problems.append(f"dead-letter ratio {ratio:.1%} over the last window")
        self._check_backlog(report)
        self._check_sources(report, now_ms)
        return report

    def _check_sources(self, report: HealthReport, now_ms: int) -> None:
        if self._sources is None:
            return
        latest = self._sources.views.latest_per_pair(now_ms - 86_400_000, now_ms - 3_600_000)
        by_pair = sorted(latest.items())
        report.figures["sources"] = {pair: row.source for pair, row in by_pair}
        for pair, row in by_pair:
            since = row.source_since_ms
            if row.source == self._sources.primary or since is None:
                continue
            if now_ms - since > self._limits.max_on_fallback_s * 1000:
                report.problems.append(
                    f"{pair} has read {row.source}, not {self._sources.primary}, "
                    f"for {(now_ms - since) / 1000:.0f} s"
                )

    def _check_backlog(self, report: HealthReport) -> None:
        if self._backlog is None:
            report.figures["backlog"] = "not measured (the Pub/Sub emulator has no metrics)"
            return
        undelivered, oldest = self._backlog.backlog(self._subscription)
        report.figures.update(backlog_messages=undelivered, oldest_unacked_s=oldest)
        if undelivered is not None and undelivered > self._limits.max_undelivered_messages:
            report.problems.append(f"{undelivered} messages wait in {self._subscription}")
        if oldest is not None and oldest > self._limits.max_oldest_unacked_s:
            report.problems.append(f"the oldest unacked message is {oldest:.0f} s old")


# What a plain restart does to each job. A cancelled extract loses its cursors, but the new
# job resumes each pair at the newest quote `quotes` holds (within extract_max_lookback_s), so
# a cancel loses nothing however long the relaunch takes (and a pipeline with a splittable
# DoFn, as PeriodicImpulse is, can fail to drain on Dataflow); the load drains, so the bars it
# holds are written before it ends.
PLAIN_STOP = {"extract": StopMode.CANCEL, "load": StopMode.DRAIN}


class RestartService:
    def __init__(self, runner: JobRunner, poll_s: float = 0.5) -> None:
        self._runner = runner
        self._poll_s = poll_s

    def restart(
        self, pipeline: str, mode: StopMode | None, timeout_s: float
    ) -> tuple[Job | None, Job]:
        """Stop the job (`mode` None: the job's own PLAIN_STOP), wait for a terminal state,
        relaunch it under the same name. What it had not acknowledged stays in the
        subscription for the new job."""
        name = JOB_NAMES[pipeline]
        before = self._runner.find(name)
        if before is not None and not before.state.terminal:
            self._runner.stop(name, mode or PLAIN_STOP[pipeline])
            deadline = time.monotonic() + timeout_s
            while (job := self._runner.find(name)) is not None and not job.state.terminal:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} still {job.state} after {timeout_s:.0f} s")
                time.sleep(self._poll_s)
        return before, self._runner.launch(name, pipeline, [])

    def update(
        self, pipeline: str, timeout_s: float, renamed: Mapping[str, str] | None = None
    ) -> tuple[Job | None, Job]:
        """Replace the running job in place where the runner can (Dataflow keeps its state
        and its unacknowledged messages); otherwise restart it as a plain restart does. A job
        that is not running is simply launched."""
        name = JOB_NAMES[pipeline]
        before = self._runner.find(name)
        if before is not None and before.state is JobState.RUNNING:
            replaced = self._runner.replace(name, pipeline, InPlaceUpdate(timeout_s, renamed or {}))
            if replaced is not None:
                return before, replaced
        return self.restart(pipeline, None, timeout_s)
