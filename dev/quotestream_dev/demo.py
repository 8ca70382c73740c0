"""`quotestream demo`: the whole pipeline on this machine, driven from Airflow.

local stack (emulators, API) -> Airflow standalone with the project's DAGs -> the DAGs
provision, deploy the API and launch the streaming jobs -> quotes flow for N seconds, with a
few malformed messages mixed in -> summary, data-quality checks, PNG report -> stop what the
demo started (at once with --exit, else on Ctrl-C).

Every message published on `quotes` is recorded by a tap of the topic (a subscription of its
own), then looked up in `quotes` and `quotes_dead_letter`: the summary says what was lost.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from quotestream.adapters.local.stack import SERVICES, LocalStack
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import now_ms
from quotestream.ports import JobRunner
from quotestream.ports.jobs import StopMode
from quotestream.services.accounting import AccountingService
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from quotestream_dev.local_airflow import LocalAirflow
from quotestream_dev.synthetic import fresh_quote

SETUP_DAGS = ("quotestream_provision", "quotestream_deploy_api")
STREAMING_DAG = "quotestream_streaming"
PROGRESS_EVERY_S = 5.0
MALFORMED_EVERY_S = 20.0
DRAIN_TIMEOUT_S = 120.0


class DemoFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class DemoRun:
    seconds: float
    keep_running: bool
    airflow_port: int | None = None


def run(stack: LocalStack, repo_root: Path, options: DemoRun) -> int:
    # A plain `kill` gets the same clean stop as Ctrl-C, and so does SIGINT when a shell
    # started the demo in the background with SIGINT ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ExitStack() as cleanup:
        try:
            return _run(stack, repo_root, options, cleanup)
        finally:
            # Once stopping, a second Ctrl-C must not cut the cleanup short.
            _ignore_interrupts()


def _run(stack: LocalStack, repo_root: Path, options: DemoRun, cleanup: ExitStack) -> int:
    from quotestream import bootstrap
    from quotestream_dev.demo_summary import RunRecord, summarize, summary_lines, write_run_report

    say("==> local stack: Pub/Sub emulator, BigQuery emulator, API")
    running_before = {status.name for status in stack.status() if status.healthy}
    # Registered before starting: a failure or Ctrl-C half-way still stops what did start.
    cleanup.callback(
        _step,
        "stopping the parts of the local stack the demo started",
        stack.down,
        only=[name for name in SERVICES if name not in running_before],
    )
    env, _ = stack.up()
    env["QUOTESTREAM_LOCAL_STATE_DIR"] = str(stack.state_dir.resolve())
    os.environ.update(env)  # settings, the Google clients and Airflow's tasks read these
    settings = Settings()
    runner = bootstrap.build_job_runner(settings)
    cleanup.callback(_stop_jobs_started_since, runner, _running_jobs(runner))

    say("\n==> Airflow (standalone) with the project's DAGs")
    airflow = LocalAirflow(stack.state_dir.resolve() / "airflow", repo_root, options.airflow_port)
    started_at = time.monotonic()
    airflow_process = airflow.start(env)
    cleanup.callback(_step, "stopping Airflow", airflow_process.stop, 20)
    say(
        f"  UI {airflow.url}  user admin  password in {airflow.passwords_file}"
        f"  (up in {time.monotonic() - started_at:.0f} s)"
    )
    say(f"  Quotes pipeline page {airflow.pipeline_page}")
    airflow.wait_for_dags([*SETUP_DAGS, STREAMING_DAG])
    for dag_id in SETUP_DAGS:
        _run_dag(airflow, dag_id)

    tap = bootstrap.build_topic_tap(settings)
    tap.open()
    cleanup.callback(tap.close)
    start_ms = now_ms()
    _run_dag(airflow, STREAMING_DAG)

    say(
        f"\n==> quotes flowing for {options.seconds:.0f} s "
        f"(a malformed message every {MALFORMED_EVERY_S:.0f} s shows the dead-letter path)"
    )
    accountant = bootstrap.build_accounting_service(settings, start_ms - 1000)
    publisher = bootstrap.build_publisher(settings)
    cleanup.callback(publisher.close)
    malformed = _malformed_messages()
    deadline = time.monotonic() + options.seconds
    next_malformed = time.monotonic() + 5
    while (remaining := deadline - time.monotonic()) > 0:
        if time.monotonic() >= next_malformed:
            publisher.publish(settings.quotes_topic, next(malformed), {}).result(timeout=30)
            next_malformed += MALFORMED_EVERY_S
        time.sleep(min(PROGRESS_EVERY_S, remaining))
        _progress(accountant, len(tap.published()), start_ms)

    if not options.keep_running:
        say("\n==> stopping extraction, waiting until every published message is accounted for")
        airflow.set_paused(STREAMING_DAG, True)  # or its schedule would relaunch extraction
        runner.stop(JOB_NAMES["extract"], StopMode.DRAIN)
        accountant.wait_until_accounted(
            tap,
            DRAIN_TIMEOUT_S,
            report=lambda pending: say(f"  {len(pending.unaccounted):,} still in flight"),
        )

    record = RunRecord.read(accountant, tap.published(), start_ms)
    summary = summarize(
        record,
        bootstrap.build_data_quality_service(settings),
        airflow.url,
        _page_figures(airflow),
    )
    say("\n==> summary")
    for line in summary_lines(summary, airflow.passwords_file):
        say(line)
    report = write_run_report(stack.state_dir / "reports", record, summary)
    say(f"\n  report {report}\n  summary {report.with_suffix('.json')}")
    if options.keep_running:
        say("\nstill running; Ctrl-C stops everything the demo started")
        _wait_for_interrupt(lambda: _progress(accountant, len(tap.published()), start_ms))
        say("")
    if record.accounting.duplicate_rows or (
        record.accounting.unaccounted and not options.keep_running
    ):
        raise DemoFailed(
            f"{len(record.accounting.unaccounted)} published messages are in neither table "
            f"and {record.accounting.duplicate_rows} rows are duplicates; "
            f"see {report.with_suffix('.json')}"
        )
    return 0


def _page_figures(airflow: LocalAirflow) -> dict[str, Any]:
    """What the pipeline page showed at the end of the run, as the summary keeps it."""
    figures = airflow.pipeline_figures()
    return {
        "url": airflow.pipeline_page,
        "rows_last_hour": figures["rows_last_hour"],
        "dead_letters_last_hour": sum(group["count"] for group in figures["dead_letters"]),
        "jobs": {job["name"]: job["state"] for job in figures["jobs"]},
        "warehouse_error": figures["warehouse_error"],
    }


def say(line: str) -> None:
    print(line, flush=True)


def _step(title: str, action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    say(f"==> {title}")
    action(*args, **kwargs)


def _ignore_interrupts() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _running_jobs(runner: JobRunner) -> set[str]:
    return {
        name
        for name in JOB_NAMES.values()
        if (job := runner.find(name)) is not None and not job.state.terminal
    }


def _stop_jobs_started_since(runner: JobRunner, running_before: set[str]) -> None:
    say("==> stopping the streaming jobs the demo started")
    for name in JOB_NAMES.values():
        if name not in running_before:
            runner.stop(name, StopMode.DRAIN)


def _run_dag(airflow: LocalAirflow, dag_id: str) -> None:
    say(f"  trigger {dag_id}")
    airflow.set_paused(dag_id, False)
    run_id = airflow.trigger(dag_id)
    state = airflow.wait(dag_id, run_id, progress=lambda line: say(f"    {line}"))
    if state != "success":
        raise DemoFailed(
            f"{dag_id} run {run_id} ended {state}; its task logs are under "
            f"{airflow.home / 'logs'} and in the UI at {airflow.url}"
        )


def _progress(accountant: AccountingService, published: int, start_ms: int) -> None:
    progress = accountant.progress()
    lag = (
        f"{(now_ms() - progress.newest_event_ms) / 1000:5.1f} s"
        if progress.newest_event_ms
        else "    -"
    )
    say(
        f"  t+{(now_ms() - start_ms) / 1000:4.0f} s  published {published:>6,}  "
        f"loaded {progress.loaded:>6,}  dead letters {progress.dead_letters:>3,}  "
        f"lag {lag}"
    )


def _malformed_messages() -> Iterator[bytes]:
    """What a broken producer might send; each must end in `quotes_dead_letter`."""
    spec = PAIR_CATALOG["USD-BRL"]
    index = 0
    while True:
        index += 1
        kind = index % 3
        if kind == 1:
            yield b'{"pair": "USD-BRL", "bid": "5.3500", "ask": '
        elif kind == 2:
            yield json.dumps(["USD-BRL", "5.3500", "5.3510"]).encode()
        else:
            quote = fresh_quote(spec, index, f"demo-crossed-{index}")
            yield replace(quote, bid=quote.ask, ask=quote.bid, spread=-quote.spread).to_json()


def _wait_for_interrupt(every_30_s: Callable[[], None]) -> None:
    try:
        while True:
            time.sleep(30)
            every_30_s()
    except KeyboardInterrupt:
        pass
