"""The local JobRunner with real processes: a stand-in pipeline script in a scratch repo."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from quotestream.adapters.local.job_runner import LocalJobRunner
from quotestream.adapters.local.processes import pid_alive
from quotestream.ports.jobs import JobState, StopMode

pytestmark = pytest.mark.unit

PIPELINE = """
import signal, sys, time
print("args", sys.argv[1:], flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if "--fail" in sys.argv:
    sys.exit(3)
if "--finish" in sys.argv:
    sys.exit(0)
while True:
    time.sleep(0.1)
"""


@pytest.fixture
def runner(tmp_path: Path) -> LocalJobRunner:
    (tmp_path / "beam_pipelines").mkdir()
    (tmp_path / "beam_pipelines" / "fake_quotes.py").write_text(PIPELINE)
    return LocalJobRunner(tmp_path / "state", tmp_path)


def wait_for(runner: LocalJobRunner, name: str, state: JobState) -> None:
    deadline = time.monotonic() + 20
    while (job := runner.find(name)) is None or job.state is not state:
        assert time.monotonic() < deadline, f"{name} is {job and job.state}, not {state}"
        time.sleep(0.05)


def test_a_launched_job_runs_detached_and_is_found_by_name(runner: LocalJobRunner) -> None:
    assert runner.find("quotes-load") is None
    job = runner.launch("quotes-load", "fake", ["--subscription=s"])
    try:
        assert job.state is JobState.RUNNING
        assert runner.find("quotes-load") == job
        with pytest.raises(RuntimeError, match="already running"):
            runner.launch("quotes-load", "fake", [])
        deadline = time.monotonic() + 20
        log = Path(job.detail)
        while not log.exists() or "args" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "--runner=DirectRunner" in log.read_text()
    finally:
        runner.stop("quotes-load", StopMode.CANCEL)
    wait_for(runner, "quotes-load", JobState.CANCELLED)
    assert not pid_alive(int(job.job_id))


def test_exit_statuses_become_done_or_failed(runner: LocalJobRunner) -> None:
    runner.launch("ok", "fake", ["--finish"])
    runner.launch("broken", "fake", ["--fail"])
    wait_for(runner, "ok", JobState.DONE)
    wait_for(runner, "broken", JobState.FAILED)
    relaunched = runner.launch("broken", "fake", ["--finish"])
    assert relaunched.state is JobState.RUNNING
    wait_for(runner, "broken", JobState.DONE)
