"""`quotestream bench load`: quotes pushed at a steady rate through the whole local stack.

POST /v1/quotes (the relay) -> Pub/Sub emulator -> load job (DirectRunner, launched by the
job runner the DAGs use) -> BigQuery emulator. A tap of the topic is the ledger: every
message is looked up in `quotes` and `quotes_dead_letter` afterwards, so the loss count is
measured, not assumed. Memory is sampled per process group while it runs.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import now_ms
from quotestream.ports.jobs import StopMode
from quotestream.services.accounting import latencies
from quotestream.services.streaming import JOB_NAMES
from quotestream_dev.bench.procfs import group_rss_bytes
from quotestream_dev.bench.relay_client import post_until_accepted
from quotestream_dev.stats import percentile
from quotestream_dev.synthetic import fresh_quote

MAX_BATCH = 1_000
# Under the relay's default per-client limit (20 requests/s).
POSTS_PER_S = 10
SETTLE_TIMEOUT_S = 180.0


def run(rate: float, seconds: float, repo_root: Path) -> int:
    from quotestream import bootstrap
    from quotestream.adapters.local.stack import LocalStack
    from quotestream.settings import Settings

    state = Path(tempfile.mkdtemp(prefix="quotestream-bench-load-"))
    total = int(rate * seconds)
    print(
        f"bench load: {total:,} quotes at {rate:,.0f}/s for {seconds:.0f} s through "
        f"POST /v1/quotes -> Pub/Sub -> load job -> BigQuery; state and logs in {state}"
    )
    stack = LocalStack(state, repo_root, "quotestream-bench", free_ports_only=True)
    runner = None
    memory = PeakMemory()
    try:
        env, _ = stack.up(say=lambda _: None)
        env["QUOTESTREAM_LOCAL_STATE_DIR"] = str(state)
        os.environ.update(env)
        settings = Settings()
        bootstrap.build_provision_service(settings).run()
        tap = bootstrap.build_topic_tap(settings)
        tap.open()
        runner = bootstrap.build_job_runner(settings)
        job = runner.launch(JOB_NAMES["load"], "load", [])
        for status in stack.status():
            memory.watch(status.name, int(status.pid or 0))
        memory.watch("load job", int(job.job_id))
        memory.start()
        accountant = bootstrap.build_accounting_service(settings, now_ms() - 1000)

        push = _push(env["QUOTESTREAM_API_URL"], env["QUOTESTREAM_API_KEY"], rate, total)
        print(
            f"  pushed {push.accepted:,} in {push.seconds:.1f} s ({push.retried:,} batches "
            f"retried after 429/503, {push.rejected:,} quotes refused); waiting for the rows"
        )
        accounting = accountant.wait_until_accounted(tap, SETTLE_TIMEOUT_S, push.accepted)
        memory.stop()
        published = tap.published()
        loaded = accountant.loaded_quotes()
        lost = len(accounting.unaccounted) + max(0, push.accepted - accounting.published)
        _print_figures(rate, push, published, loaded, memory, lost, accounting.duplicate_rows)
        tap.close()
        return 0 if lost == 0 and accounting.duplicate_rows == 0 else 1
    finally:
        memory.stop()
        if runner is not None:
            runner.stop(JOB_NAMES["load"], StopMode.CANCEL)
        stack.down(say=lambda _: None)


@dataclass(frozen=True)
class PushResult:
    accepted: int
    rejected: int
    retried: int
    seconds: float


def _push(api_url: str, api_key: str, rate: float, total: int) -> PushResult:
    """Each quote is due at start + index / rate; every 1/POSTS_PER_S s, whatever is due goes
    in one POST (a slow answer is caught up by a bigger batch, not by a lower rate)."""
    specs = list(PAIR_CATALOG.values())
    started = time.monotonic()
    accepted = rejected = retried = index = posts = 0
    next_report = started + 10
    while index < total:
        posts += 1
        if (wait := started + posts / POSTS_PER_S - time.monotonic()) > 0:
            time.sleep(wait)
        due = min(total, index + MAX_BATCH, int((time.monotonic() - started) * rate))
        if due <= index:
            continue
        quotes = [
            fresh_quote(specs[i % len(specs)], i, f"bench{i}").to_dict() for i in range(index, due)
        ]
        receipt, retries = post_until_accepted(f"{api_url}/v1/quotes", quotes, api_key)
        accepted += int(receipt["accepted"])
        rejected += int(receipt["rejected"])
        retried += retries
        index = due
        if time.monotonic() >= next_report:
            print(f"  t+{time.monotonic() - started:4.0f} s  pushed {accepted:,}")
            next_report += 10
    return PushResult(accepted, rejected, retried, time.monotonic() - started)


def _print_figures(
    rate: float,
    push: PushResult,
    published: list[Any],
    loaded: list[Any],
    memory: PeakMemory,
    lost: int,
    duplicates: int,
) -> None:
    first = min((m.publish_ms for m in published), default=0)
    last = max((q.ingest_ms for q in loaded), default=first)
    elapsed = max((last - first) / 1000, 1e-9)
    sustained = len(loaded) / elapsed
    offered = push.accepted / max(push.seconds, 1e-9)
    print(f"  rows in quotes      {len(loaded):,} of {push.accepted:,} pushed")
    print(
        f"  sustained           {sustained:,.1f} rows/s over {elapsed:.1f} s "
        f"(offered {offered:,.1f}/s of {rate:,.0f}/s asked: ratio {sustained / offered:.2f})"
    )
    for label, values in latencies(published, loaded).items():
        print(
            f"  latency {label:<14} p50 {percentile(values, 0.5):6.2f} s  "
            f"p95 {percentile(values, 0.95):6.2f} s  p99 {percentile(values, 0.99):6.2f} s"
        )
    for name, peak in memory.peaks().items():
        print(f"  peak memory {name:<10} {peak / 2**20:8,.0f} MiB")
    print(f"  duplicates          {duplicates:,}")
    print(f"  lost                {lost:,}")


class PeakMemory:
    """Peak resident memory of each watched process group (a service and its children)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self._groups: dict[str, int] = {}
        self._peaks: dict[str, int] = {}
        self._every_s = every_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def watch(self, name: str, pgid: int) -> None:
        self._groups[name] = pgid

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def peaks(self) -> dict[str, int]:
        return dict(self._peaks)

    def _sample_until_stopped(self) -> None:
        while not self._stopped.wait(self._every_s):
            for name, total in group_rss_bytes(self._groups).items():
                self._peaks[name] = max(self._peaks.get(name, 0), total)
