"""A 20,000-message drain through load jobs killed with SIGKILL five times (once with an append
done at BigQuery but its answer not yet back) and a BigQuery emulator restarted once under a
running job (every open write stream forgotten): `quotes` holds each quote once,
`quotes_dead_letter` each refused message once, and `quote_bars_1m` each pane once, every
closed minute's final pane counting every quote of the minute."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.adapters.local.bigquery_emulator import (
    emulator_environment,
    start_bigquery_emulator,
)
from quotestream.adapters.local.processes import ServiceProcess, free_port
from quotestream.ports.jobs import Job, JobState, StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from quotestream_dev.bench.drain import backlog_of
from tests.conftest import REPO
from tests.support.holding_proxy import ResponseHoldingProxy
from tests.support.local_runs import wait_until

# About 2 minutes: in make test-tiers (and alone, make test-crash).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.crash]

LOAD = JOB_NAMES["load"]
MESSAGES = 20_000
PUBLISH_PER_S = 250
# Long enough for a 5,000-message bundle on a busy machine: one that takes longer comes again
# while it is still being written.
ACK_DEADLINE_S = 30
# Every late quote restates its bar: the whole backlog is within the bars' lateness.
LOAD_ARGS = ["--allowed_lateness_s=7200"]
KILLS_AT = (0.08, 0.22, 0.36, 0.5, 0.64)
# From the second kill on, until one is.
IN_FLIGHT_KILL = 1
EMULATOR_RESTART_AT = 0.78


class Emulator:
    """A BigQuery emulator of this test's own, restartable on the same ports and data."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._port, self._grpc_port = free_port(), free_port()
        self.service = self._start()

    def _start(self) -> ServiceProcess:
        return start_bigquery_emulator(
            REPO,
            self._port,
            self._root / "bigquery.log",
            self._root / "bigquery-data",
            "crashes",
            grpc_port=self._grpc_port,
        )

    def restart(self) -> None:
        self.service.stop()
        self.service = self._start()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    own = Emulator(tmp_path)
    try:
        yield own
    finally:
        own.service.stop()


def test_kills_and_a_bigquery_restart_lose_and_repeat_nothing(
    emulator: Emulator,
    pubsub_emulator: ServiceProcess,
    job_target: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = ResponseHoldingProxy(emulator.service.grpc_port or 0)
    for name, value in emulator_environment(emulator.service).items():
        monkeypatch.setenv(name, value)
    # The jobs write through the proxy, which can keep an append's answer from them.
    monkeypatch.setenv("BIGQUERY_STORAGE_EMULATOR_HOST", proxy.address)
    settings = job_target(
        "crashes",
        QUOTESTREAM_ACK_DEADLINE_S=str(ACK_DEADLINE_S),
        QUOTESTREAM_BIGQUERY_WRITER="storage_write",
    )
    backlog = backlog_of(MESSAGES)
    warehouse = bootstrap.build_warehouse(settings)
    runner = bootstrap.build_job_runner(settings)
    published: dict[str, bool] = {}
    publishing = threading.Thread(
        target=_publish, args=(settings, backlog.messages, published), daemon=True
    )

    def stored() -> int:
        return int(_one(warehouse, "SELECT COUNT(DISTINCT event_id) AS n FROM {dataset}.quotes"))

    def rows_in_all_tables() -> int:
        return int(
            _one(
                warehouse,
                "SELECT (SELECT COUNT(*) FROM {dataset}.quotes) "
                "+ (SELECT COUNT(*) FROM {dataset}.quote_bars_1m) "
                "+ (SELECT COUNT(*) FROM {dataset}.quotes_dead_letter) AS n",
            )
        )

    kills: list[str] = []
    try:
        publishing.start()
        job = runner.launch(LOAD, "load", LOAD_ARGS)
        for index, share in enumerate(KILLS_AT):
            wait_until(
                lambda share=share: stored() >= share * len(backlog.quote_ids),
                180,
                f"{share:.0%} of the quotes stored",
                poll_s=0.2,
            )
            in_flight = (
                index >= IN_FLIGHT_KILL
                and not any("in flight" in kill for kill in kills)
                and _hold_a_done_append(proxy, rows_in_all_tables)
            )
            kills.append(f"{job.job_id} at {stored():,} quotes{' (in flight)' * in_flight}")
            job = _kill_and_relaunch(runner, job)
        assert any("in flight" in kill for kill in kills), f"no append held: {kills}"
        wait_until(
            lambda: stored() >= EMULATOR_RESTART_AT * len(backlog.quote_ids),
            180,
            "most quotes stored",
            poll_s=0.2,
        )
        emulator.restart()
        publishing.join(timeout=300)
        assert not publishing.is_alive(), "the publisher did not finish"
        poison = {message_id for message_id, is_quote in published.items() if not is_quote}

        def dead_letters() -> int:
            return int(_one(warehouse, "SELECT COUNT(*) AS n FROM {dataset}.quotes_dead_letter"))

        try:
            wait_until(
                lambda: stored() == len(backlog.quote_ids) and dead_letters() >= len(poison),
                240,
                "every message stored",
                poll_s=1,
            )
        except AssertionError:
            raise AssertionError(
                f"{stored():,} of {len(backlog.quote_ids):,} quotes and {dead_letters()} of "
                f"{len(poison)} dead letters stored; killed {kills}\n{_tail(job)}"
            ) from None
        # Anything a dead job held and a later one stored again would show by now.
        time.sleep(ACK_DEADLINE_S + 5)
        assert runner.find(LOAD).state is JobState.RUNNING, _tail(job)
    finally:
        proxy.close()
        runner.stop(LOAD, StopMode.CANCEL)

    print("killed:", "; ".join(kills))
    quotes = [row["event_id"] for row in warehouse.query("SELECT event_id FROM {dataset}.quotes")]
    assert Counter(quotes) == Counter(backlog.quote_ids)
    dead = warehouse.query("SELECT message_id FROM {dataset}.quotes_dead_letter")
    assert Counter(row["message_id"] for row in dead) == Counter(poison)
    _assert_bars_complete_and_once(warehouse)


def _hold_a_done_append(proxy: ResponseHoldingProxy, rows: Callable[[], int]) -> bool:
    """Keeps BigQuery's answers from the job until one was held whose rows landed: an append
    done at BigQuery that the job does not know of. False if what was held was something else
    (opening a stream, a keepalive): the job is killed all the same, and a later kill tries
    again."""
    before = rows()
    proxy.hold_responses()
    if not proxy.held.wait(60):
        return False
    try:
        wait_until(lambda: rows() > before, 30, "the held append to land", 0.2)
    except AssertionError:
        return False
    return True


def _kill_and_relaunch(runner: Any, job: Job) -> Job:
    os.killpg(int(job.job_id), signal.SIGKILL)
    wait_until(lambda: runner.find(LOAD).state.terminal, 30, "the kill to show")
    return runner.launch(LOAD, "load", LOAD_ARGS)


def _publish(
    settings: Settings, messages: list[tuple[bytes, dict[str, str]]], published: dict[str, bool]
) -> None:
    """At a steady rate, so the drain spans the kills: message id -> whether it is a quote."""
    from google.cloud.pubsub_v1 import PublisherClient

    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    started = time.monotonic()
    for start in range(0, len(messages), PUBLISH_PER_S // 5):
        chunk = messages[start : start + PUBLISH_PER_S // 5]
        futures = [(publisher.publish(topic, data, **attrs), bool(attrs)) for data, attrs in chunk]
        for future, is_quote in futures:
            published[future.result(timeout=60)] = is_quote
        time.sleep(max(0.0, started + (start + len(chunk)) / PUBLISH_PER_S - time.monotonic()))
    publisher.stop()


def _assert_bars_complete_and_once(warehouse: Any) -> None:
    panes = warehouse.query(
        "SELECT pair, UNIX_MILLIS(window_start) AS start_ms, pane_index, tick_count "
        "FROM {dataset}.quote_bars_1m"
    )
    copies = Counter((row["pair"], row["start_ms"], row["pane_index"]) for row in panes)
    assert [pane for pane, count in copies.items() if count > 1] == []
    final: dict[tuple[str, int], tuple[int, int]] = {}
    for row in panes:
        key = (row["pair"], int(row["start_ms"]))
        final[key] = max(final.get(key, (-1, 0)), (int(row["pane_index"]), int(row["tick_count"])))
    minutes = warehouse.query(
        "SELECT pair, DIV(UNIX_MILLIS(event_ts), 60000) * 60000 AS start_ms, COUNT(*) AS n "
        "FROM {dataset}.quotes GROUP BY pair, start_ms"
    )
    ticks = {(row["pair"], int(row["start_ms"])): int(row["n"]) for row in minutes}
    newest = {pair: max(start for p, start in ticks if p == pair) for pair, _ in ticks}
    # A pair's newest minute stays open: the local runner's watermark does not close it.
    closed = {key: n for key, n in ticks.items() if key[1] < newest[key[0]]}
    wrong = {
        key: (final.get(key), n) for key, n in closed.items() if final.get(key, (0, 0))[1] != n
    }
    assert wrong == {}, f"{len(wrong)} of {len(closed)} closed minutes' bars miss ticks"
    print(f"bars: {len(panes)} panes, {len(closed)} closed minutes, each complete and once")


def _one(warehouse: Any, sql: str) -> Any:
    return warehouse.query(sql)[0]["n"]


def _tail(job: Job) -> str:
    return Path(job.detail).read_text(errors="replace")[-6000:]
