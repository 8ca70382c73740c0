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
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quotestream.adapters.local.airflow import LocalAirflow
from quotestream.adapters.local.stack import LocalStack
from quotestream.bench.stats import percentile
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import Quote, format_ts, make_event_id, now_ms
from quotestream.services.accounting import Accounting, AccountingService
from quotestream.settings import Settings

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
        return _run(stack, repo_root, options, cleanup)


def _run(stack: LocalStack, repo_root: Path, options: DemoRun, cleanup: ExitStack) -> int:
    from quotestream import bootstrap
    from quotestream.services.streaming import JOB_NAMES

    say("==> local stack: Pub/Sub emulator, BigQuery emulator, API")
    running_before = {status.name for status in stack.status() if status.healthy}
    env = stack.up()
    started = [name for name in ("pubsub", "bigquery", "api") if name not in running_before]
    cleanup.callback(
        _step, "stopping the parts of the local stack the demo started", stack.down, only=started
    )
    env["QUOTESTREAM_LOCAL_STATE_DIR"] = str(stack.state_dir.resolve())
    os.environ.update(env)  # settings, the Google clients and Airflow's tasks read these
    settings = Settings()
    runner = bootstrap.build_job_runner(settings)
    cleanup.callback(_stop_jobs, runner, list(JOB_NAMES.values()))

    say("\n==> Airflow (standalone) with the project's DAGs")
    airflow = LocalAirflow(stack.state_dir.resolve() / "airflow", repo_root, options.airflow_port)
    started_at = time.monotonic()
    airflow_process = airflow.start(env)
    cleanup.callback(_step, "stopping Airflow", airflow_process.stop, 20)
    say(
        f"  UI {airflow.url}  user admin  password in {airflow.passwords_file}"
        f"  (up in {time.monotonic() - started_at:.0f} s)"
    )
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
        runner.stop(JOB_NAMES["extract"], _drain_mode())
        _drain(accountant, tap)

    accounting = accountant.account(tap.published())
    summary = _summarize(settings, accountant, accounting, tap.published(), start_ms, airflow)
    report = _write_report(stack.state_dir / "reports", summary, accountant, tap, start_ms)
    say(f"\n  report {report}\n  summary {report.with_suffix('.json')}")
    if options.keep_running:
        say("\nstill running; Ctrl-C stops everything the demo started")
        _wait_for_interrupt(lambda: _progress(accountant, len(tap.published()), start_ms))
        say("")
    if accounting.unaccounted or accounting.duplicate_rows:
        if options.keep_running:
            return 0  # messages were still in flight when it was interrupted
        raise DemoFailed(
            f"{len(accounting.unaccounted)} published messages are in neither table and "
            f"{accounting.duplicate_rows} rows are duplicates; see {report.with_suffix('.json')}"
        )
    return 0


def say(line: str) -> None:
    print(line, flush=True)


def _step(title: str, action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    say(f"==> {title}")
    action(*args, **kwargs)


def _stop_jobs(runner: Any, names: list[str]) -> None:
    say("==> stopping the streaming jobs")
    for name in names:
        runner.stop(name, _drain_mode())


def _drain_mode() -> Any:
    from quotestream.jobs import StopMode

    return StopMode.DRAIN


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


def _drain(accountant: AccountingService, tap: Any) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        accounting = accountant.account(tap.published())
        if not accounting.unaccounted:
            return
        say(f"  {len(accounting.unaccounted):,} still in flight")
        time.sleep(2)
    say(f"  gave up waiting after {DRAIN_TIMEOUT_S:.0f} s")


def _malformed_messages() -> Any:
    """What a broken producer might send; each must end in `quotes_dead_letter`."""
    spec = PAIR_CATALOG["USD-BRL"]
    index = 0
    while True:
        index += 1
        moment = now_ms()
        kind = index % 3
        if kind == 1:
            yield b'{"pair": "USD-BRL", "bid": "5.3500", "ask": '
        elif kind == 2:
            yield json.dumps(["USD-BRL", "5.3500", "5.3510"]).encode()
        else:
            bid, ask = spec.reference_price + 1, spec.reference_price  # crossed: bid above ask
            source = f"demo-crossed-{index}"
            yield Quote(
                event_id=make_event_id(spec.pair, moment, source),
                pair=spec.pair,
                base=spec.base,
                quote_currency=spec.quote_currency,
                bid=bid,
                ask=ask,
                mid=(bid + ask) / 2,
                spread=ask - bid,
                event_ts_ms=moment,
                source=source,
            ).to_json()


def _summarize(
    settings: Settings,
    accountant: AccountingService,
    accounting: Accounting,
    published: list[Any],
    start_ms: int,
    airflow: LocalAirflow,
) -> dict[str, Any]:
    from quotestream import bootstrap

    loaded = accountant.loaded_quotes()
    bars = accountant.bars()
    publish_ms = {m.event_id: m.publish_ms for m in published if m.event_id}
    tick_to_row = [(q.ingest_ms - q.event_ms) / 1000 for q in loaded]
    publish_to_row = [
        (q.ingest_ms - publish_ms[q.event_id]) / 1000 for q in loaded if q.event_id in publish_ms
    ]
    quality = _data_quality(bootstrap.build_data_quality_service(settings), loaded, accounting)
    summary = {
        "published_messages": accounting.published,
        "distinct_quotes_published": len(publish_ms),
        "rows_in_quotes": len(loaded),
        "messages_loaded": accounting.loaded,
        "messages_dead_lettered": accounting.dead_lettered,
        "dead_letters_by_reason": accounting.dead_letter_reasons,
        "unaccounted_message_ids": [m.message_id for m in accounting.unaccounted],
        "duplicate_rows": accounting.duplicate_rows,
        "bars": len(bars),
        "latency_s": {
            "tick_to_row": _percentiles(tick_to_row),
            "publish_to_row": _percentiles(publish_to_row),
        },
        "data_quality": quality,
        "airflow_ui": airflow.url,
        "started": format_ts(start_ms),
    }
    say("\n==> summary")
    say(
        f"  published on `quotes`   {accounting.published:,} messages "
        f"({len(publish_ms):,} distinct quotes, the rest malformed)"
    )
    say(f"  rows in `quotes`        {len(loaded):,}")
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(accounting.dead_letter_reasons.items()))
    say(
        f"  dead letters            {accounting.dead_lettered:,}"
        + (f" ({reasons})" if reasons else "")
    )
    lost = len(accounting.unaccounted)
    say(f"  in neither table        {lost:,}" + (" (nothing lost)" if not lost else ""))
    say(f"  duplicate rows          {accounting.duplicate_rows:,}")
    say(f"  1-minute bars           {len(bars):,} across {len({b.pair for b in bars})} pairs")
    for label, values in (("tick -> row", tick_to_row), ("publish -> row", publish_to_row)):
        figures = _percentiles(values)
        say(f"  latency {label:<15} p50 {figures['p50']:.2f} s  p95 {figures['p95']:.2f} s")
    say(f"  data quality            {quality['window']}")
    for line in quality["results"]:
        say(f"    {line}")
    say(f"  Airflow UI              {airflow.url}  (admin / password in {airflow.passwords_file})")
    return summary


def _data_quality(service: Any, loaded: list[Any], accounting: Accounting) -> dict[str, Any]:
    """The checks of the quality DAG, over the part of the run every pair has fully delivered:
    from each pair's first loaded quote to the earliest quote still in flight."""
    from quotestream.services.quality import DataQualityFailed

    firsts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    for quote in loaded:
        firsts[quote.pair] = min(firsts.get(quote.pair, quote.event_ms), quote.event_ms)
        lasts[quote.pair] = max(lasts.get(quote.pair, quote.event_ms), quote.event_ms)
    in_flight = [m.event_ts_ms for m in accounting.unaccounted if m.event_ts_ms]
    if not firsts:
        return {"window": "skipped: nothing loaded", "passed": False, "results": []}
    start_ms = (max(firsts.values()) // 1000 + 1) * 1000
    end_ms = (min([*lasts.values(), *in_flight]) // 1000) * 1000
    if end_ms - start_ms < 10_000:
        return {"window": "skipped: under 10 s of complete data", "passed": False, "results": []}
    start, end = (datetime.fromtimestamp(ms / 1000, UTC) for ms in (start_ms, end_ms))
    run_id = f"demo-{start_ms}"
    try:
        results = service.run(start, end, run_id, check_freshness=True)
        passed, lines = True, [str(result) for result in results]
    except DataQualityFailed as failed:
        passed, lines = False, [str(result) for result in failed.failures]
    window = f"{format_ts(start_ms)} .. {format_ts(end_ms)}: " + ("passed" if passed else "FAILED")
    return {"window": window, "passed": passed, "results": lines}


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def _write_report(
    directory: Path,
    summary: dict[str, Any],
    accountant: AccountingService,
    tap: Any,
    start_ms: int,
) -> Path:
    from quotestream.report import write_report

    stamp = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"demo-{stamp}.png"
    write_report(
        path,
        f"quotestream demo {stamp}: {summary['published_messages']:,} published, "
        f"{len(summary['unaccounted_message_ids'])} lost",
        start_ms,
        tap.published(),
        accountant.loaded_quotes(),
        accountant.bars(),
    )
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _wait_for_interrupt(every_30_s: Callable[[], None]) -> None:
    try:
        while True:
            time.sleep(30)
            every_30_s()
    except KeyboardInterrupt:
        pass
