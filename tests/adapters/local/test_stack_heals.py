"""After a part of the local stack crashes under a running load job, `quotestream local up`
restarts it on its recorded port (where the API and the job still point), re-provisions what
the Pub/Sub emulator lost, and the same job goes on storing every quote once, after a minute
without Pub/Sub, quotes published while BigQuery was down or frozen for 20 s included.
`provision` against a stopped part fails at once with what to do."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import free_port
from quotestream.adapters.local.stack import read_env_file
from quotestream.domain import PAIR_CATALOG
from quotestream.domain.quote import Quote
from quotestream.ports.jobs import JobState, StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from quotestream_dev.synthetic import fresh_quote
from tests.entrypoints.test_cli_local_stack import quotestream
from tests.support.local_runs import own_stack_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.emulators, pytest.mark.slow]

LOAD = JOB_NAMES["load"]
SPECS = list(PAIR_CATALOG.values())
FREEZE_S = 20
PUBSUB_OUTAGE_S = 60


def test_a_crashed_part_comes_back_on_its_port_and_the_running_job_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    ports = [f"--{name}-port={free_port()}" for name in ("pubsub", "bigquery", "api")]
    for key in [key for key in os.environ if key not in own_stack_env()]:
        monkeypatch.delenv(key)
    up = quotestream("local", "--state-dir", str(state), "up", *ports)
    assert up.returncode == 0, up.stderr
    env = read_env_file(state / "env")
    for key, value in {**env, "QUOTESTREAM_LOCAL_STATE_DIR": str(state)}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    runner = bootstrap.build_job_runner(settings)
    warehouse = bootstrap.build_warehouse(settings)
    sent: list[str] = []

    def stored() -> int:
        row = warehouse.query("SELECT COUNT(DISTINCT event_id) AS n FROM {dataset}.quotes")[0]
        return int(row["n"] or 0)

    def total() -> int:
        return int(warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes")[0]["n"] or 0)

    def next_quotes(count: int) -> list[Quote]:
        return [fresh_quote(SPECS[i % 6], i, f"heal{len(sent) + i}") for i in range(count)]

    def publish(count: int) -> None:
        publisher = PublisherClient()
        topic = publisher.topic_path(settings.project, settings.quotes_topic)
        quotes = next_quotes(count)
        for quote in quotes:
            publisher.publish(topic, quote.to_json(), **quote.pubsub_attributes()).result(30)
        sent.extend(quote.event_id for quote in quotes)

    def push(count: int) -> None:
        quotes = next_quotes(count)
        response = httpx.post(
            f"{env['QUOTESTREAM_API_URL']}/v1/quotes",
            json=[quote.to_dict() for quote in quotes],
            headers={"X-API-Key": env["QUOTESTREAM_API_KEY"]},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        sent.extend(quote.event_id for quote in quotes)

    try:
        assert quotestream("provision", "--env-file", str(state / "env")).returncode == 0
        job = runner.launch(LOAD, "load", [])
        publish(60)
        wait_until(lambda: stored() == len(sent), 60, "the first quotes")
        for part in ("bigquery", "pubsub", "api"):
            record = json.loads((state / "stack.json").read_text())["services"][part]
            crashed = Path(f"/proc/{record['pid']}")
            os.killpg(record["pid"], signal.SIGKILL)
            wait_until(lambda gone=crashed: not gone.exists(), 10, "the crash")
            if part == "pubsub":
                started = time.monotonic()
                refused = quotestream("provision", "--env-file", str(state / "env"))
                assert refused.returncode == 1
                assert "does not answer" in refused.stderr, refused.stderr
                assert time.monotonic() - started < 20
                # The job waits out a minute without Pub/Sub before the emulator is back.
                time.sleep(PUBSUB_OUTAGE_S - (time.monotonic() - started))
            if part == "bigquery":
                publish(60)  # while the writer is down: the job holds them, unacknowledged
            again = quotestream("local", "--state-dir", str(state), "up")
            assert again.returncode == 0, again.stderr
            assert f"restarting on its port {record['port']}" in again.stdout
            assert ("re-provisioning" in again.stdout) == (part == "pubsub")
            assert read_env_file(state / "env") == env, "a port moved under the running job"
            if part == "api":
                push(60)
            else:
                publish(60)
            wait_until(lambda: stored() == len(sent), 120, f"the quotes after {part} came back")
            print(f"{part} restarted on port {record['port']}: {stored()} of {len(sent)} stored")
        # A writer that stops answering for 20 s, under traffic.
        bigquery = json.loads((state / "stack.json").read_text())["services"]["bigquery"]
        os.killpg(bigquery["pid"], signal.SIGSTOP)
        try:
            publish(60)
            time.sleep(FREEZE_S)
        finally:
            os.killpg(bigquery["pid"], signal.SIGCONT)
        wait_until(lambda: stored() == len(sent), 120, "the quotes after the freeze")
        print(f"BigQuery frozen {FREEZE_S} s: {stored()} of {len(sent)} stored")
        assert runner.find(LOAD).job_id == job.job_id
        assert runner.find(LOAD).state is JobState.RUNNING, "the job did not ride it out"
        assert total() == len(sent)
    finally:
        runner.stop(LOAD, StopMode.CANCEL)
        quotestream("local", "--state-dir", str(state), "down")
