"""A load job killed mid-stream (SIGKILL: no chance to finish anything) and relaunched by the
`quotestream_restart` DAG stores every published quote exactly once: the local source
acknowledges a message only after its row is written, so what the dead job held comes again,
and a redelivered message whose row is already there is not inserted twice."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.quote import now_ms
from quotestream.ports.jobs import JobState, StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from tests.support.corpus import bad_messages
from tests.support.dag_runs import states
from tests.support.local_runs import recent_quotes, wait_until
from tests.support.stalling_proxy import StallingProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD = JOB_NAMES["load"]
QUOTES_INSERT = b"/tables/quotes/insertAll"
ACK_DEADLINE_S = 10


@pytest.fixture
def crash_target(job_target: Any) -> Settings:
    # The shortest ack deadline Pub/Sub allows: what the killed job held comes again after it.
    # The insertAll writer, whose requests the proxy can hold (the Storage Write writer's
    # crashes are tests/beam/test_load_crashes.py's).
    settings: Settings = job_target(
        "crash",
        QUOTESTREAM_ACK_DEADLINE_S=str(ACK_DEADLINE_S),
        QUOTESTREAM_BIGQUERY_WRITER="insert_all",
    )
    return settings


def test_a_load_job_killed_mid_stream_and_restarted_by_the_dag_stores_each_quote_once(
    dagbag: Any,
    crash_target: Settings,
    bigquery_emulator: ServiceProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = crash_target
    now = now_ms()
    good = recent_quotes(11, "crash-test", 1500)
    bad = [message for message, _ in bad_messages(now) if message.data]
    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    published: list[str] = []
    messages = [(q.to_json(), q.pubsub_attributes()) for q in good]
    for index, message in enumerate(bad):
        messages.insert(index * len(good) // len(bad), (message.data, message.attributes))
    backlog, while_held, rest = messages[:1000], messages[1000:1050], messages[1050:]

    def publish(batch: list[tuple[bytes, dict[str, str]]], pause_s: float) -> None:
        for start in range(0, len(batch), 50):
            futures = [
                publisher.publish(topic, data, **attributes)
                for data, attributes in batch[start : start + 50]
            ]
            published.extend(future.result(timeout=30) for future in futures)
            time.sleep(pause_s)

    runner = bootstrap.build_job_runner(settings)
    warehouse = bootstrap.build_warehouse(settings)

    def counts() -> dict[str, int]:
        row = warehouse.query(
            "SELECT (SELECT COUNT(*) FROM {dataset}.quotes) AS quotes, "
            "(SELECT COUNT(DISTINCT event_id) FROM {dataset}.quotes) AS distinct_quotes, "
            "(SELECT COUNT(*) FROM {dataset}.quotes_dead_letter) AS dead, "
            "(SELECT COUNT(DISTINCT message_id) FROM {dataset}.quotes_dead_letter) "
            "AS distinct_dead"
        )[0]
        return {key: int(value or 0) for key, value in row.items()}

    # A backlog, so the job holds hundreds of pulled messages when it dies; the rest is
    # published while it is down and being replaced. The first job writes through a proxy
    # that can hold one of its writes, so it is killed while it surely holds pulled,
    # unacknowledged messages (killed right after an acknowledgement, it might hold none).
    publish(backlog, 0)
    proxy = StallingProxy(int(bigquery_emulator.address.rsplit(":", 1)[1]))
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://{proxy.address}")
    first = runner.launch(LOAD, "load", [])
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://{bigquery_emulator.address}")
    publishing = threading.Thread(target=publish, args=(rest, 0.5))
    try:
        wait_until(lambda: counts()["quotes"] > 0, 180, "the job to store rows", poll_s=0.05)
        proxy.arm(QUOTES_INSERT)
        publish(while_held, 0)
        assert proxy.held.wait(180), "the job wrote no more quotes: " + _tail(first.detail)
        os.killpg(int(first.job_id), signal.SIGKILL)
        publishing.start()
        wait_until(lambda: runner.find(LOAD).state.terminal, 10, "the kill to show")
        loaded_at_kill = counts()["quotes"]
        log = Path(first.detail)
        log_offset = log.stat().st_size

        restart = dagbag.get_dag("quotestream_restart").test(
            run_conf={"job": "load", "mode": "cancel", "timeout_s": 30}
        )

        assert states(restart) == {"restart": "success"}
        second = runner.find(LOAD)
        assert second.state is JobState.RUNNING
        assert second.job_id != first.job_id
        publishing.join(timeout=60)
        assert len(published) == len(good) + len(bad), "the publisher did not finish"
        wait_until(
            lambda: (
                counts()["distinct_quotes"] == len(good) and counts()["distinct_dead"] == len(bad)
            ),
            60,
            "every published message to be stored",
        )
        # Anything the dead job held and the new one stored again would show by now.
        time.sleep(ACK_DEADLINE_S + 3)
        final = counts()
    finally:
        proxy.close()
        if publishing.is_alive():  # not started when the job never stored a row
            publishing.join(timeout=60)
        runner.stop(LOAD, StopMode.CANCEL)

    assert final == {
        "quotes": len(good),
        "distinct_quotes": len(good),
        "dead": len(bad),
        "distinct_dead": len(bad),
    }
    stored = warehouse.query("SELECT event_id FROM {dataset}.quotes")
    assert {row["event_id"] for row in stored} == {quote.event_id for quote in good}
    assert 0 < loaded_at_kill < len(good), "the job was not killed mid-stream"
    # What the killed job had pulled and not acknowledged came again to the new one.
    after_restart = log.read_text(errors="replace")[log_offset:]
    redelivered = sum(
        int(n) for n in re.findall(r"pulled \d+ messages, (\d+) of them redelivered", after_restart)
    )
    print(f"loaded at kill: {loaded_at_kill}; redelivered after the restart: {redelivered}")
    assert redelivered > 0


def _tail(log_path: str) -> str:
    return Path(log_path).read_text(errors="replace")[-6000:]
