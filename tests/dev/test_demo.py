"""`quotestream demo --exit`, as a newcomer runs it: the local stack, Airflow standalone, the
DAGs, the streaming jobs, malformed messages, the summary and the report. Then the tables are
read again, from the data the demo left, and nothing may still be running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from quotestream.adapters.local.processes import free_port
from tests.conftest import REPO
from tests.support.local_runs import own_stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.emulators, pytest.mark.airflow, pytest.mark.slow]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _demo_command(state: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "quotestream.entrypoints.cli",
        "demo",
        *options,
        "--state-dir",
        str(state),
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    state = tmp_path_factory.mktemp("demo-state")
    completed = subprocess.run(
        # Over a minute, so every pair closes at least one 1-minute bar.
        _demo_command(state, "--seconds", "70", "--exit"),
        cwd=REPO,
        env=own_stack_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    summaries = sorted((state / "reports").glob("demo-*.json"))
    assert len(summaries) == 1, output[-2000:]
    return state, output, json.loads(summaries[0].read_text())


def test_every_published_message_is_in_exactly_one_table(
    demo: tuple[Path, str, dict[str, Any]],
) -> None:
    _, output, summary = demo
    assert summary["published_messages"] > 500  # about 10 quotes/s for 70 s, plus malformed
    assert summary["unaccounted_message_ids"] == []
    assert summary["duplicate_rows"] == 0
    assert (
        summary["messages_loaded"] + summary["messages_dead_lettered"]
        == summary["published_messages"]
    )
    # The demo mixes malformed messages in; each is a dead letter with the gate's reason.
    malformed = summary["published_messages"] - summary["distinct_quotes_published"]
    assert malformed >= 1
    assert sum(summary["dead_letters_by_reason"].values()) == malformed
    assert "(nothing lost)" in output


def test_the_summary_reports_latency_quality_and_where_airflow_was(
    demo: tuple[Path, str, dict[str, Any]],
) -> None:
    state, output, summary = demo
    latency = summary["latency_s"]["tick -> row"]
    assert 0 < latency["p50"] <= latency["p95"] < 60
    assert summary["data_quality"]["passed"], summary["data_quality"]
    assert any("reconciliation" in line for line in summary["data_quality"]["results"])
    assert summary["bars"] >= 6  # one closed minute per pair at least
    assert summary["airflow_ui"].startswith("http://127.0.0.1:")
    page = summary["pipeline_page"]
    assert page["url"] == summary["airflow_ui"] + "/quotestream/"
    assert f"Quotes pipeline page {page['url']}" in output
    # The page, read through Airflow, counted what the run loaded (all of it within the hour).
    assert page["warehouse_error"] is None
    assert page["rows_last_hour"] == summary["rows_in_quotes"]
    assert page["dead_letters_last_hour"] == summary["messages_dead_lettered"]
    assert page["jobs"]["quotestream-load"] == "running"
    assert "quotestream_streaming.ensure_running: success" in output
    report = next((state / "reports").glob("demo-*.png"))
    assert report.read_bytes()[:8] == PNG_SIGNATURE
    assert report.stat().st_size > 20_000


def test_the_tables_hold_what_the_summary_says(
    demo: tuple[Path, str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from quotestream import bootstrap
    from quotestream.adapters.local.bigquery_emulator import start_bigquery_emulator
    from quotestream.settings import Settings

    state, _, summary = demo
    emulator = start_bigquery_emulator(
        REPO, free_port(), state / "reread.log", state / "bigquery-data", "quotestream-local"
    )
    try:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"http://{emulator.address}")
        warehouse = bootstrap.build_warehouse(Settings(project="quotestream-local"))
        counts = warehouse.query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS ids FROM {dataset}.quotes"
        )[0]
        dead = warehouse.query("SELECT COUNT(*) AS n FROM {dataset}.quotes_dead_letter")[0]
    finally:
        emulator.stop()
    assert counts["n"] == counts["ids"] == summary["rows_in_quotes"]
    assert dead["n"] == summary["messages_dead_lettered"]


def test_nothing_the_demo_started_is_still_running(
    demo: tuple[Path, str, dict[str, Any]],
) -> None:
    state, _, _ = demo
    assert _survivors(state) == []


def _survivors(state: Path) -> list[str]:
    """Command lines of processes that name the state directory in their arguments or
    environment (the stack, Airflow and the jobs all do)."""
    marker = str(state).encode()
    survivors = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if marker in cmdline or marker in environ:
                survivors.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return survivors


# Reads the demo's output until the demo serves, then exits: the pipe closes under the demo,
# as when `make demo | tee demo.log` gets Ctrl-C and tee dies first.
READ_UNTIL_SERVING = """
import sys
with open(sys.argv[1], "w") as log:
    for line in sys.stdin:
        log.write(line)
        log.flush()
        if "still running" in line:
            break
"""


def test_without_exit_it_runs_until_interrupted_then_stops_what_it_started_even_unread(
    tmp_path: Path,
) -> None:
    log = tmp_path / "demo.out"
    demo = subprocess.Popen(
        _demo_command(tmp_path / "state", "--seconds", "5"),
        cwd=REPO,
        env=own_stack_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert demo.stdout is not None
    reader = subprocess.Popen(
        [sys.executable, "-c", READ_UNTIL_SERVING, str(log)], stdin=demo.stdout
    )
    demo.stdout.close()  # the reader holds the only read end
    try:
        assert reader.wait(timeout=400) == 0
        assert "still running" in log.read_text(), log.read_text()[-3000:]
        assert demo.poll() is None, log.read_text()[-3000:]
        assert _survivors(tmp_path / "state"), "nothing of the demo runs while it serves"
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        time.sleep(1)
        demo.send_signal(signal.SIGINT)  # an impatient second one
        assert demo.wait(timeout=120) == 0
    finally:
        for process in (demo, reader):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert _survivors(tmp_path / "state") == []
