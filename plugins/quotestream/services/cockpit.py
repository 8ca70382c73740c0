"""What the operator's page shows: the jobs, the flow of quotes, dead letters, quality, bars.

Every figure comes from the ports the DAGs' services use (the job runner, the health verdict
of `quotestream_streaming`, the stored bars) or from the page's read model; a warehouse that
cannot be reached leaves the jobs on the page and says why the rest is missing. Readings run
on a thread of their own: a slow warehouse makes the figures stale, never a page wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from quotestream.domain.ledger import Bar
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.ports import JobRunner
from quotestream.ports.queries import BarQueries
from quotestream.ports.views import (
    DeadLetterGroup,
    Lag,
    MinuteCount,
    PairLatest,
    PipelineViews,
    QualityResult,
)
from quotestream.services.quality_checks import GAP_CHECKS
from quotestream.services.streaming import JOB_NAMES, StreamingService

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# Failed hours and open gaps are looked for this far back: a week of hourly checks.
QUALITY_LOOKBACK_MS = 7 * 24 * HOUR_MS
# A pair is quiet once it has missed this many of its own ticks (and at least a minute).
QUIET_AFTER_TICKS = 30
QUIET_FLOOR_S = 60.0
# Figures are read again at most this often, however many pages are open: each reading is
# about eight warehouse queries and four job lookups.
FRESH_FOR_S = 10.0
# The request that starts a reading waits this long for it; past that, and for every request
# while it runs, the last figures are served marked stale. The API server's threads are
# Airflow's own: a slow warehouse must not hold them.
WAIT_FOR_READING_S = 2.0


@dataclass(frozen=True, slots=True)
class JobView:
    name: str
    state: str
    job_id: str | None
    since_ms: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class PairFreshness:
    pair: str
    newest_ms: int | None
    age_s: float | None
    quiet: bool
    # The source of the newest quote, since when it has served, and how often the pair's
    # source switched in the last hour: the extract fails over between sources.
    source: str | None
    source_since_ms: int | None
    source_switches: int


@dataclass(frozen=True, slots=True)
class HourView:
    """An hour whose newest check results include failures: which checks, for which pairs."""

    interval_start_ms: int
    interval_end_ms: int
    failures: list[str]


@dataclass
class Figures:
    generated_ms: int
    jobs: list[JobView] = field(default_factory=list)
    jobs_error: str | None = None
    verdict: list[str] | None = None
    throughput: list[MinuteCount] = field(default_factory=list)
    rows_last_hour: int = 0
    lag: Lag | None = None
    freshness: list[PairFreshness] = field(default_factory=list)
    dead_letters: list[DeadLetterGroup] = field(default_factory=list)
    latest_quality: list[QualityResult] = field(default_factory=list)
    failed_hours: list[HourView] = field(default_factory=list)
    open_gaps: list[HourView] = field(default_factory=list)
    bars_pair: str = ""
    bars: list[Bar] = field(default_factory=list)
    warehouse_error: str | None = None
    # Older than FRESH_FOR_S: a newer reading has been running since `reading_since_ms`.
    stale: bool = False
    reading_since_ms: int | None = None
    # No reading has finished yet: every figure above is missing, not zero.
    pending: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Reading:
    started_ms: int
    done: threading.Event = field(default_factory=threading.Event)


class CockpitService:
    def __init__(
        self,
        runner: JobRunner,
        streaming: StreamingService,
        bars: BarQueries,
        views: PipelineViews,
        pairs: Sequence[str],
        clock: Callable[[], float] = time.time,
        wait_for_reading_s: float = WAIT_FOR_READING_S,
    ) -> None:
        self._runner = runner
        self._streaming = streaming
        self._stored_bars = bars
        self._views = views
        self._pairs = list(pairs)
        self._clock = clock
        self._wait_for_reading_s = wait_for_reading_s
        # Guards the two dicts only, never held across a reading.
        self._lock = threading.Lock()
        self._read: dict[str, tuple[float, Figures]] = {}
        self._readings: dict[str, _Reading] = {}

    @property
    def pairs(self) -> list[str]:
        return list(self._pairs)

    def figures(self, bars_pair: str | None = None) -> Figures:
        """Everything the page shows; `bars_pair` (default: the first configured pair) is the
        pair whose 1-minute bars of the last hour come along."""
        pair = bars_pair or self._pairs[0]
        if pair not in self._pairs:
            raise ValueError(f"unknown pair {pair!r}: configured are {', '.join(self._pairs)}")
        with self._lock:
            fresh = self._fresh(pair)
            if fresh is not None:
                return fresh
            last = self._read.get(pair, (0.0, None))[1]
            reading = self._readings.get(pair)
            # The request that starts a reading, or any before there is anything to show,
            # waits for it a little; the others get the last figures at once.
            wait = reading is None or last is None
            if reading is None:
                reading = self._start_reading(pair)
        if wait and reading.done.wait(self._wait_for_reading_s):
            with self._lock:
                fresh = self._fresh(pair)
            if fresh is not None:
                return fresh
        if last is None:
            return Figures(
                generated_ms=reading.started_ms,
                bars_pair=pair,
                stale=True,
                reading_since_ms=reading.started_ms,
                pending=True,
            )
        return replace(last, stale=True, reading_since_ms=reading.started_ms)

    def _fresh(self, pair: str) -> Figures | None:
        read_at, figures = self._read.get(pair, (0.0, None))
        return figures if figures is not None and self._clock() - read_at < FRESH_FOR_S else None

    def _start_reading(self, pair: str) -> _Reading:
        reading = self._readings[pair] = _Reading(int(self._clock() * 1000))
        threading.Thread(
            target=self._run_reading, args=(pair, reading), name=f"cockpit-{pair}", daemon=True
        ).start()
        return reading

    def _run_reading(self, pair: str, reading: _Reading) -> None:
        try:
            figures = self._read_figures(pair)
            with self._lock:
                self._read[pair] = (self._clock(), figures)
        finally:
            with self._lock:
                del self._readings[pair]
            reading.done.set()

    def _read_figures(self, pair: str) -> Figures:
        now_ms = int(self._clock() * 1000)
        figures = Figures(generated_ms=now_ms, bars_pair=pair)
        try:
            figures.jobs = self._jobs()
        except Exception as error:  # a view says what it cannot show, and shows the rest
            log.warning("the job runner did not answer: %s", error)
            figures.jobs_error = f"the job runner did not answer: {error}"
        try:
            self._warehouse_figures(figures, now_ms, pair)
        except Exception as error:
            log.warning("the warehouse did not answer: %s", error)
            figures.warehouse_error = f"the warehouse cannot be reached: {error}"
        return figures

    def _jobs(self) -> list[JobView]:
        views = []
        for name in JOB_NAMES.values():
            job = self._runner.find(name)
            if job is None:
                views.append(JobView(name, "absent", None, None, "never launched"))
            else:
                views.append(
                    JobView(name, str(job.state), job.job_id, job.started_ts_ms, job.detail)
                )
        return views

    def _warehouse_figures(self, figures: Figures, now_ms: int, pair: str) -> None:
        hour_ago = now_ms - HOUR_MS
        figures.throughput = self._views.rows_per_minute(hour_ago)
        figures.rows_last_hour = sum(minute.rows for minute in figures.throughput)
        figures.lag = self._views.lag(hour_ago)
        figures.freshness = self._freshness(now_ms, hour_ago)
        figures.dead_letters = self._views.dead_letters_by_reason(hour_ago)
        self._quality(figures, self._views.quality_results(now_ms - QUALITY_LOOKBACK_MS))
        figures.bars = self._bars(pair, hour_ago, now_ms)
        figures.verdict = self._streaming.health().problems

    def _freshness(self, now_ms: int, hour_ago: int) -> list[PairFreshness]:
        latest = self._views.latest_per_pair(now_ms - 24 * HOUR_MS, hour_ago)
        return [_pair_freshness(pair, latest.get(pair), now_ms) for pair in self._pairs]

    @staticmethod
    def _quality(figures: Figures, results: list[QualityResult]) -> None:
        if not results:
            return
        newest_run = max(results, key=lambda result: result.checked_ms).run_id
        figures.latest_quality = [result for result in results if result.run_id == newest_run]
        hours: dict[tuple[int, int], list[QualityResult]] = {}
        for result in results:
            if not result.passed:
                hours.setdefault((result.interval_start_ms, result.interval_end_ms), []).append(
                    result
                )
        for (start, end), failed in sorted(hours.items(), reverse=True):
            names = [_failure_name(result) for result in failed]
            figures.failed_hours.append(HourView(start, end, names))
            gaps = [_failure_name(result) for result in failed if result.check_name in GAP_CHECKS]
            if gaps:
                figures.open_gaps.append(HourView(start, end, gaps))

    def _bars(self, pair: str, since_ms: int, now_ms: int) -> list[Bar]:
        """The pair's bars whose minute ended from `since_ms` on: the final pane of each, as the
        quality check compares them."""
        start, end = (
            datetime.fromtimestamp(ms / 1000, UTC) for ms in (since_ms - MINUTE_MS, now_ms)
        )
        bars = self._stored_bars.final_bars(start, end)
        return sorted(
            (bar for bar in bars if bar.pair == pair), key=lambda bar: bar.window_start_ms
        )

    def close(self) -> None:
        self._views.close()
        self._stored_bars.close()


def _pair_freshness(pair: str, latest: PairLatest | None, now_ms: int) -> PairFreshness:
    if latest is None:
        return PairFreshness(pair, None, None, True, None, None, 0)
    age_s = max(0.0, (now_ms - latest.newest_ms) / 1000)
    limit_s = max(QUIET_FLOOR_S, QUIET_AFTER_TICKS * PAIR_CATALOG[pair].tick_interval_ms / 1000)
    return PairFreshness(
        pair,
        latest.newest_ms,
        age_s,
        age_s > limit_s,
        latest.source,
        latest.source_since_ms,
        latest.switches,
    )


def _failure_name(result: QualityResult) -> str:
    return f"{result.check_name} {result.pair}" if result.pair else result.check_name
