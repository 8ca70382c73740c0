"""The JobRunner stand-in for Dataflow: each job a detached DirectRunner process.

`<state>/jobs/<name>.json` records pid, pipeline, args, start time and, once the process
ends, its exit status (written by the supervisor below, which outlives the caller: an Airflow
task launches a streaming job and returns at once).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quotestream.adapters.local.processes import (
    child_running,
    pipeline_command,
    remember_child,
    runs,
    stop_pid,
)
from quotestream.domain.quote import now_ms
from quotestream.ports.jobs import InPlaceUpdate, Job, JobState, StopMode


class LocalJobRunner:
    def __init__(
        self,
        state_dir: Path,
        repo_root: Path,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self._jobs_dir = state_dir / "jobs"
        self._logs_dir = state_dir / "logs"
        self._repo_root = repo_root
        self._env = dict(env or {})
        # The jobs' runtime (Beam), which need not be the caller's: Composer's has no Beam.
        self._python = python

    def find(self, name: str) -> Job | None:
        record = self._read(name)
        if record is None:
            return None
        return self._job(name, record)

    def launch(self, name: str, pipeline: str, args: Sequence[str]) -> Job:
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        # Two DAG tasks (streaming and restart) may launch the same job at once: the check and
        # the launch happen under one lock, so exactly one of them starts it.
        with (self._jobs_dir / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.find(name)
            if current is not None and not current.state.terminal:
                raise RuntimeError(f"job {name} is already {current.state} (pid {current.job_id})")
            return self._start(name, pipeline, args)

    def replace(self, name: str, pipeline: str, update: InPlaceUpdate) -> Job | None:
        """The DirectRunner keeps no state to hand over: the caller drains and relaunches."""
        return None

    def _start(self, name: str, pipeline: str, args: Sequence[str]) -> Job:
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        command = pipeline_command(self._repo_root, pipeline, args, self._python)
        record: dict[str, Any] = {
            "run_id": uuid.uuid4().hex,
            "pipeline": pipeline,
            "args": list(args),
            "started_ts_ms": now_ms(),
            "log": str(self._logs_dir / f"job-{name}.log"),
        }
        supervisor = subprocess.Popen(  # noqa: S603 - our own module and entry point
            [
                self._python,
                "-m",
                "quotestream.adapters.local.job_runner",
                str(self._path(name)),
                record["run_id"],
                record["log"],
                *command,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self._env},
            start_new_session=True,
        )
        remember_child(supervisor)
        record["pid"] = supervisor.pid
        self._write(name, record)
        return self._job(name, record)

    def stop(self, name: str, mode: StopMode) -> None:
        """The DirectRunner cannot drain: both modes stop the process (SIGTERM, then SIGKILL).
        Nothing is lost: the local load acknowledges a message only once its row is written,
        so what the job held comes again to the next run after the ack deadline."""
        record = self._read(name)
        if record is None or "exit_status" in record:
            return
        record["stopping"] = mode.value
        self._write(name, record)
        stop_pid(int(record["pid"]), timeout=15)

    def _job(self, name: str, record: dict[str, Any]) -> Job:
        pid = int(record["pid"])
        if "exit_status" in record:
            status = int(record["exit_status"])
            state = (
                JobState.CANCELLED
                if record.get("stopping")
                else JobState.DONE
                if status == 0
                else JobState.FAILED
            )
        elif _is_supervisor(pid, self._path(name)):
            state = JobState.STOPPING if record.get("stopping") else JobState.RUNNING
        else:
            # Killed outright (SIGKILL, reboot): the supervisor had no chance to write.
            state = JobState.CANCELLED if record.get("stopping") else JobState.FAILED
        return Job(name, str(pid), state, int(record["started_ts_ms"]), record["log"])

    def _path(self, name: str) -> Path:
        return self._jobs_dir / f"{name}.json"

    def _read(self, name: str) -> dict[str, Any] | None:
        return _read_record(self._path(name)) or None

    def _write(self, name: str, record: dict[str, Any]) -> None:
        _write_atomically(self._path(name), record)


def _read_record(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return loaded


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(path)


def _is_supervisor(pid: int, state_file: Path) -> bool:
    """Alive, and still our supervisor: a reused pid belongs to someone else."""
    ours = child_running(pid)
    if ours is not None:  # started by this process: it may not have exec'd yet
        return ours
    return runs(pid, str(state_file))


def _supervise(state_file: Path, run_id: str, log_path: Path, command: list[str]) -> int:
    """Run the pipeline, forward SIGTERM to it, record its exit status in its own record."""
    with log_path.open("ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    status = child.wait()
    # The launcher writes the record just after starting us; a quick exit may come first.
    deadline = time.monotonic() + 5
    while (record := _read_record(state_file)).get("run_id") != run_id:
        if time.monotonic() > deadline:
            return status  # a newer run owns the state file now
        time.sleep(0.05)
    record["exit_status"] = status
    record["ended_ts_ms"] = now_ms()
    _write_atomically(state_file, record)
    return status


if __name__ == "__main__":
    sys.exit(_supervise(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4:]))
