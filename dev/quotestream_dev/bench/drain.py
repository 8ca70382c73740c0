"""`quotestream bench drain`: the load job against a plain hand-written loop, each draining the
same backlog of the load subscription on the same emulators, one after the other.

Each consumer gets a project of its own (its own topic, subscription and tables) holding the
same messages: the simulated market's ticks of the last half hour, with one message in a
hundred that the gate refuses. Rates count from the first poll that sees a stored row on, so
start-up is not counted; CPU is that of the consumer's process group (children included) over
the same span. The poll is one count of each table every POLL_S, the same for both.
Afterwards every message is looked up: a quote row for each valid one, a dead-letter row for
each refused one, exactly once.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quotestream.adapters.local.processes import (
    ServiceProcess,
    start_pipeline_process,
    start_service,
)
from quotestream.domain.quote import now_ms
from quotestream_dev.bench.emulators import start_emulators
from quotestream_dev.bench.procfs import group_cpu_seconds
from quotestream_dev.synthetic import market_quotes

POISON_EVERY = 100
POLL_S = 0.25
# A consumer that stores nothing more for this long has stopped: what is missing is lost.
STALL_S = 120.0


@dataclass(frozen=True)
class Backlog:
    messages: list[tuple[bytes, dict[str, str]]]
    quote_ids: set[str]
    poison_count: int


@dataclass(frozen=True)
class Span:
    """What a consumer did from the first poll that saw a stored row to the one that saw the
    last: rows stored, seconds, and CPU seconds of its process group."""

    rows: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0


@dataclass(frozen=True)
class Drain:
    consumer: str
    span: Span
    quote_rows: int
    dead_letters: int
    lost: int
    duplicates: int

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicates == 0

    @property
    def measured(self) -> bool:
        """Whether rows were stored after the first poll that saw some: a backlog drained
        between two polls has no rate."""
        return self.span.rows > 0 and self.span.seconds > 0

    @property
    def rows_per_s(self) -> float:
        return self.span.rows / self.span.seconds

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.span.cpu_s / self.span.rows


Starter = Callable[[Path, dict[str, str]], ServiceProcess]


def run(count: int, repo_root: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="quotestream-bench-drain-"))
    backlog = backlog_of(count)
    print(
        f"bench drain: a backlog of {count:,} messages ({backlog.poison_count:,} the gate "
        f"refuses) drained by each consumer in turn, on the same emulators; logs in {work}"
    )
    services: list[ServiceProcess] = []
    try:
        emulators = start_emulators(work, repo_root, services)
        consumers: dict[str, Starter] = {
            "plain loop": lambda log, env: start_service(
                "plain-loop",
                [sys.executable, "-m", "quotestream_dev.bench.plain_loop"],
                host="127.0.0.1",
                port=0,
                log_path=log,
                ready=lambda: True,
                env=env,
            ),
            "load job": lambda log, env: start_pipeline_process(repo_root, "load", log, env),
        }
        drains = [
            _drain(name, start, backlog, emulators, work) for name, start in consumers.items()
        ]
    finally:
        for service in reversed(services):
            service.stop()
    _print_figures(drains)
    return 0 if all(drain.clean for drain in drains) else 1


def backlog_of(count: int) -> Backlog:
    quotes = market_quotes(count, now_ms() - 1000)
    messages: list[tuple[bytes, dict[str, str]]] = []
    quote_ids: set[str] = set()
    for index, quote in enumerate(quotes):
        if index % POISON_EVERY == POISON_EVERY - 1:
            # Two of the gate's reasons: bytes that are not JSON, a negative ask.
            negative = quote.to_json().replace(b'"ask":"', b'"ask":"-')
            messages.append((b"{not json" if index // POISON_EVERY % 2 else negative, {}))
            continue
        messages.append((quote.to_json(), quote.pubsub_attributes()))
        quote_ids.add(quote.event_id)
    return Backlog(messages, quote_ids, len(messages) - len(quote_ids))


def _drain(
    name: str, start: Starter, backlog: Backlog, emulators: dict[str, str], work: Path
) -> Drain:
    from quotestream import bootstrap
    from quotestream.settings import Settings

    env = {**emulators, "QUOTESTREAM_PROJECT": f"drain-{uuid.uuid4().hex[:6]}"}
    os.environ.update(env)
    settings = Settings()
    bootstrap.build_provision_service(settings).run()
    poison_ids = _publish(settings, backlog.messages)
    print(f"\n{name}: {len(backlog.messages):,} messages waiting on {settings.load_subscription}")
    queries = bootstrap.build_accounting_queries(settings)
    consumer = start(work / f"{name.replace(' ', '-')}.log", env)
    try:
        span = _watch(consumer, queries, len(backlog.messages))
    finally:
        consumer.stop()
    loaded = queries.loaded_quotes_since(0)
    dead = queries.dead_letter_reasons_since(0)
    dead_rows = queries.progress_since(0).dead_letters
    queries.close()
    copies = Counter(quote.event_id for quote in loaded)
    return Drain(
        name,
        span,
        quote_rows=len(loaded),
        dead_letters=dead_rows,
        lost=len(backlog.quote_ids - copies.keys()) + len(poison_ids - dead.keys()),
        duplicates=sum(n - 1 for n in copies.values()) + dead_rows - len(dead),
    )


def _publish(settings: Any, messages: list[tuple[bytes, dict[str, str]]]) -> set[str]:
    """Publishes the backlog; returns the message ids of the ones the gate refuses."""
    from google.cloud.pubsub_v1 import PublisherClient

    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    futures = [(publisher.publish(topic, data, **attrs), attrs) for data, attrs in messages]
    poison = {future.result(timeout=120) for future, attrs in futures if not attrs}
    publisher.stop()
    return poison


def _watch(consumer: ServiceProcess, queries: Any, expected: int) -> Span:
    """Polls until every message is stored, or nothing moves for STALL_S."""
    first: tuple[int, float, float] | None = None
    stored, last_change = 0, time.monotonic()
    next_report = time.monotonic() + 10
    while stored < expected and time.monotonic() - last_change < STALL_S:
        time.sleep(POLL_S)
        progress = queries.progress_since(0)
        now_stored = progress.loaded + progress.dead_letters
        if now_stored != stored:
            stored, last_change = now_stored, time.monotonic()
        if first is None and stored:
            first = (stored, last_change, group_cpu_seconds(consumer.pid))
        if time.monotonic() >= next_report:
            print(f"  {stored:,} of {expected:,} stored")
            next_report += 10
    if first is None:
        return Span()
    return Span(
        stored - first[0], last_change - first[1], group_cpu_seconds(consumer.pid) - first[2]
    )


def _print_figures(drains: list[Drain]) -> None:
    print(
        f"\n  {'consumer':<12} {'rows/s':>8} {'CPU s/1,000 rows':>17} {'quote rows':>11} "
        f"{'dead letters':>13} {'lost':>5} {'duplicates':>11}"
    )
    for drain in drains:
        rate, cpu = (
            (f"{drain.rows_per_s:,.0f}", f"{drain.cpu_per_1000:.3f}")
            if drain.measured
            else ("n/a", "n/a")
        )
        print(
            f"  {drain.consumer:<12} {rate:>8} {cpu:>17} {drain.quote_rows:>11,} "
            f"{drain.dead_letters:>13,} {drain.lost:>5,} {drain.duplicates:>11,}"
        )
    baseline, job = drains[0], drains[-1]
    if not (baseline.measured and job.measured):
        print("  drained between two polls: too quick to measure, give it more --messages")
        return
    print(
        f"  load job / plain loop: rate {job.rows_per_s / baseline.rows_per_s:.2f}x, "
        f"CPU per row {job.cpu_per_1000 / baseline.cpu_per_1000:.2f}x"
    )
