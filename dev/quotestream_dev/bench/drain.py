"""`quotestream bench drain`: the load job with each of its BigQuery writers (legacy streaming
inserts, `insert_all`; the Storage Write API, `storage_write`) and a plain hand-written loop,
each draining the same backlog of the load subscription on the same emulators, one after the
other.

Each consumer gets a project of its own (its own topic, subscription and tables) holding the
same messages: the simulated market's newest ticks, with one message in a hundred that the
gate refuses. A market source ticks about 36,600 times an hour over the catalog's six pairs;
a backlog larger than that takes the ticks of more sources (the same pairs, other event ids),
so it stays within the last hour, as a backlog after an hour's outage of a few dozen streams.

Rates count from the first poll that sees a stored row on, so start-up is not counted; CPU is
that of the consumer's process group (children included) over the same span, beside the
BigQuery emulator's and what the rest of the machine used meanwhile (the runs share a 2-core
machine: a consumer that drained while others were busy ran slower), and the consumer's CPU
a second once drained (the load job's runner polls when idle, so a drain that waits on
BigQuery costs CPU by the second). The poll reads the row count of each table from its
metadata, every POLL_S at first and less often as a drain goes on, the same for all. The
resident memory of the consumer's process group is sampled from its start to the end of its
drain; the peak is printed. Afterwards every message is looked up: a quote row for each
valid one, a dead-letter row for each refused one, exactly once.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quotestream.adapters.local.processes import (
    ServiceProcess,
    start_pipeline_process,
    start_service,
)
from quotestream.domain.market import MarketSimulator
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import Quote, now_ms
from quotestream_dev.bench.emulators import start_emulators
from quotestream_dev.bench.load import PeakMemory
from quotestream_dev.bench.procfs import group_cpu_seconds

POISON_EVERY = 100
POLL_S = 0.25
MAX_POLL_S = 1.0
# A consumer that stores nothing more for this long has stopped: what is missing is lost.
STALL_S = 120.0
# How long a consumer's idle CPU is measured for, once it has drained its backlog.
IDLE_S = 5.0
# The span of event time a backlog's sources tick over: its newest quotes are taken.
BACKLOG_SPAN_MS = 3_600_000
PLAIN_LOOP = "plain loop"
INSERT_ALL = "insert_all"
STORAGE_WRITE = "storage_write"


@dataclass(frozen=True)
class Backlog:
    messages: list[tuple[bytes, dict[str, str]]]
    quote_ids: set[str]
    poison_count: int
    sources: int
    span_s: float


@dataclass(frozen=True)
class Span:
    """What a consumer did from the first poll that saw a stored row to the one that saw the
    last: rows stored, seconds, and CPU seconds of its process group, of the BigQuery
    emulator's, and of everything else on the machine but the Pub/Sub emulator and the bench
    itself."""

    rows: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    emulator_cpu_s: float = 0.0
    others_cpu_s: float = 0.0

    @property
    def others_cores(self) -> float:
        """How many cores the rest of the machine kept busy on average meanwhile."""
        return max(0.0, self.others_cpu_s) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Drain:
    consumer: str
    span: Span
    idle_cpu_per_s: float
    peak_rss_bytes: int
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
    def cpu_ms_per_1000(self) -> float:
        return 1_000_000 * self.span.cpu_s / self.span.rows

    @property
    def cpu_ms_per_s(self) -> float:
        """The consumer's CPU a second while it drained: beside its idle figure, whether it
        was working or waiting."""
        return 1000 * self.span.cpu_s / self.span.seconds

    @property
    def emulator_cpu_ms_per_1000(self) -> float:
        return 1_000_000 * self.span.emulator_cpu_s / self.span.rows


Starter = Callable[[Path, dict[str, str]], ServiceProcess]


def consumers(repo_root: Path) -> dict[str, Starter]:
    """The consumers in the order they drain: the baseline, then the load job with each
    writer (its setting `bigquery_writer` in the environment of its process only)."""

    def plain_loop(log: Path, env: dict[str, str]) -> ServiceProcess:
        return start_service(
            "plain-loop",
            [sys.executable, "-m", "quotestream_dev.bench.plain_loop"],
            host="127.0.0.1",
            port=0,
            log_path=log,
            ready=lambda: True,
            env=env,
        )

    def load_job(writer: str) -> Starter:
        return lambda log, env: start_pipeline_process(
            repo_root, "load", log, {**env, "QUOTESTREAM_BIGQUERY_WRITER": writer}
        )

    return {
        PLAIN_LOOP: plain_loop,
        INSERT_ALL: load_job(INSERT_ALL),
        STORAGE_WRITE: load_job(STORAGE_WRITE),
    }


def run(count: int, repo_root: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="quotestream-bench-drain-"))
    started = time.monotonic()
    backlog = backlog_of(count)
    print(
        f"bench drain: a backlog of {count:,} messages ({backlog.poison_count:,} the gate "
        f"refuses; {backlog.sources} market source(s) over the last {backlog.span_s / 60:.0f} "
        f"min) drained by each consumer in turn ({', '.join(consumers(repo_root))}), on the "
        f"same emulators; logs in {work}",
        flush=True,
    )
    services: list[ServiceProcess] = []
    drains: list[Drain] = []
    try:
        emulators = start_emulators(work, repo_root, services)
        pgids = {"pubsub": services[0].pid, "bigquery": services[1].pid}
        for name, start in consumers(repo_root).items():
            drains.append(_drain(name, start, backlog, emulators, work, pgids))
    finally:
        for service in reversed(services):
            service.stop()
    print_figures(drains)
    print(f"\n  took {time.monotonic() - started:,.0f} s in all")
    return 0 if all(drain.clean for drain in drains) else 1


def backlog_of(count: int) -> Backlog:
    """The newest `count` ticks of as many market sources as they take, within the last
    BACKLOG_SPAN_MS; one message in POISON_EVERY made one the gate refuses."""
    end_ms = now_ms() - 1000
    start_ms = end_ms - BACKLOG_SPAN_MS
    per_source = sum(
        math.ceil(BACKLOG_SPAN_MS / spec.tick_interval_ms) for spec in PAIR_CATALOG.values()
    )
    # A little spare: jitter can leave a pair a tick short of its share.
    sources = max(1, math.ceil(count * 1.01 / per_source))
    quotes: list[Quote] = []
    for index in range(sources):
        market = MarketSimulator(1, PAIR_CATALOG, source="sim" if index == 0 else f"sim{index}")
        for spec in PAIR_CATALOG.values():
            quotes += [quote for _, quote in market.quotes_between(spec, start_ms, end_ms)]
    quotes.sort(key=lambda quote: quote.event_ts_ms)
    quotes = quotes[-count:] if count else []
    span_s = (end_ms - quotes[0].event_ts_ms) / 1000 if quotes else 0.0
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
    return Backlog(messages, quote_ids, len(messages) - len(quote_ids), sources, span_s)


def _drain(
    name: str,
    start: Starter,
    backlog: Backlog,
    emulators: Mapping[str, str],
    work: Path,
    emulator_pgids: Mapping[str, int],
) -> Drain:
    from quotestream import bootstrap
    from quotestream.settings import Settings

    env = {**emulators, "QUOTESTREAM_PROJECT": f"drain-{uuid.uuid4().hex[:6]}"}
    os.environ.update(env)
    settings = Settings()
    bootstrap.build_provision_service(settings).run()
    print(f"\n{name}: publishing {len(backlog.messages):,} messages", flush=True)
    published = time.monotonic()
    poison_ids = _publish(settings, backlog.messages)
    print(
        f"{name}: {len(backlog.messages):,} messages waiting on {settings.load_subscription} "
        f"(published in {time.monotonic() - published:,.1f} s); starting the consumer",
        flush=True,
    )
    counts = RowCounts(settings)
    consumer = start(work / f"{name.replace(' ', '-')}.log", env)
    memory = PeakMemory()
    memory.watch(name, consumer.pid)
    memory.start()
    try:
        span = _watch(consumer, counts, len(backlog.messages), emulator_pgids)
        idle_cpu_per_s = _idle_cpu_per_s(consumer)
    finally:
        memory.stop()
        consumer.stop()
        counts.close()
    print(
        f"{name}: done, {span.rows:,} rows in {span.seconds:,.1f} s after the first "
        f"(the rest of the machine kept {span.others_cores:.2f} "
        "cores busy meanwhile); checking every message is stored once",
        flush=True,
    )
    checked = time.monotonic()
    queries = bootstrap.build_accounting_queries(settings)
    loaded = queries.loaded_quotes_since(0)
    dead = queries.dead_letter_reasons_since(0)
    dead_rows = queries.progress_since(0).dead_letters
    queries.close()
    copies = Counter(quote.event_id for quote in loaded)
    drain = Drain(
        name,
        span,
        idle_cpu_per_s=idle_cpu_per_s,
        peak_rss_bytes=memory.peaks().get(name, 0),
        quote_rows=len(loaded),
        dead_letters=dead_rows,
        lost=len(backlog.quote_ids - copies.keys()) + len(poison_ids - dead.keys()),
        duplicates=sum(n - 1 for n in copies.values()) + dead_rows - len(dead),
    )
    print(
        f"{name}: {'exactly once' if drain.clean else 'NOT exactly once'} "
        f"({drain.lost:,} lost, {drain.duplicates:,} twice; checked in "
        f"{time.monotonic() - checked:,.1f} s)",
        flush=True,
    )
    return drain


def _idle_cpu_per_s(consumer: ServiceProcess) -> float:
    """CPU seconds a second the consumer spends over IDLE_S once its backlog is stored (any
    tail of work, acknowledgements or bars, included): the load job's runner keeps polling
    when it has nothing to do, so a drain that waits on BigQuery costs CPU by the second,
    not by the row."""
    before = group_cpu_seconds(consumer.pid)
    time.sleep(IDLE_S)
    return (group_cpu_seconds(consumer.pid) - before) / IDLE_S


def _publish(settings: Any, messages: list[tuple[bytes, dict[str, str]]]) -> set[str]:
    """Publishes the backlog; returns the message ids of the ones the gate refuses."""
    from google.cloud.pubsub_v1 import PublisherClient

    publisher = PublisherClient()
    topic = publisher.topic_path(settings.project, settings.quotes_topic)
    futures = [(publisher.publish(topic, data, **attrs), attrs) for data, attrs in messages]
    poison = {future.result(timeout=300) for future, attrs in futures if not attrs}
    for future, _ in futures:
        future.result(timeout=300)
    publisher.stop()
    return poison


class RowCounts:
    """The rows of `quotes` and `quotes_dead_letter`, as the emulator's table metadata counts
    them (every row written, by either API; BigQuery's own leaves the streaming buffer out).
    The emulator answers that in about 25 ms of its CPU, where a query costs it 150 ms or more
    whatever the table: a COUNT(*) of both tables every quarter of a second kept it busy on
    one core of two, and slowed the consumer it measured."""

    def __init__(self, settings: Any) -> None:
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery

        from quotestream import bootstrap

        access = bootstrap.google_access(settings, "bigquery")
        self._client = bigquery.Client(
            project=settings.project,
            credentials=access.credentials,
            client_options=ClientOptions(api_endpoint=access.endpoint) if access.endpoint else None,
        )
        self._tables = [
            f"{settings.project}.{settings.dataset}.{table}"
            for table in ("quotes", "quotes_dead_letter")
        ]

    def stored(self) -> int:
        return sum(int(self._client.get_table(table).num_rows or 0) for table in self._tables)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _poll_s(since_first_s: float) -> float:
    """POLL_S while a drain starts, then a fortieth of the time it has run, up to MAX_POLL_S:
    the span's ends are then found within 2.5 % of it, and a long drain is not polled more
    than it needs."""
    return min(MAX_POLL_S, max(POLL_S, since_first_s / 40))


@dataclass(frozen=True)
class Sample:
    """What had happened by one poll: rows stored, and CPU seconds so far of the consumer's
    process group, of the BigQuery emulator's, and of everything else on the machine (all
    its busy time less the consumer's, the emulators' and this process's)."""

    stored: int
    at: float
    cpu_s: float
    emulator_cpu_s: float
    others_cpu_s: float


def _sample(stored: int, consumer_pgid: int, emulator_pgids: Mapping[str, int]) -> Sample:
    consumer = group_cpu_seconds(consumer_pgid)
    emulators = {name: group_cpu_seconds(pgid) for name, pgid in emulator_pgids.items()}
    own = os.times()
    others = machine_busy_seconds() - consumer - sum(emulators.values()) - own.user - own.system
    return Sample(stored, time.monotonic(), consumer, emulators.get("bigquery", 0.0), others)


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has been busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _watch(
    consumer: ServiceProcess,
    counts: RowCounts,
    expected: int,
    emulator_pgids: Mapping[str, int],
) -> Span:
    """Polls until every message is stored, or nothing moves for STALL_S."""
    first: Sample | None = None
    last = Sample(0, time.monotonic(), 0.0, 0.0, 0.0)
    next_report = time.monotonic() + 10
    while last.stored < expected and time.monotonic() - last.at < STALL_S:
        time.sleep(_poll_s(time.monotonic() - first.at) if first else POLL_S)
        stored = counts.stored()
        if stored != last.stored:
            last = _sample(stored, consumer.pid, emulator_pgids)
            first = first or last
        if time.monotonic() >= next_report:
            print(f"  {last.stored:,} of {expected:,} stored", flush=True)
            next_report += 10
    if first is None:
        return Span()
    return Span(
        last.stored - first.stored,
        last.at - first.at,
        last.cpu_s - first.cpu_s,
        last.emulator_cpu_s - first.emulator_cpu_s,
        last.others_cpu_s - first.others_cpu_s,
    )


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


def print_figures(drains: list[Drain]) -> None:
    print(
        f"\n  {'consumer':<14} {'rows/s':>8} {'CPU ms/1,000 rows':>18} {'CPU ms/s':>9} "
        f"{'idle CPU ms/s':>14} {'emulator CPU ms/1,000':>22} {'peak MiB':>9} {'others busy':>12}"
    )
    for drain in drains:
        idle, peak = f"{1000 * drain.idle_cpu_per_s:.0f}", f"{drain.peak_rss_bytes / 2**20:,.0f}"
        figures = ("n/a", "n/a", "n/a", idle, "n/a", peak, "n/a")
        if drain.measured:
            figures = (
                f"{drain.rows_per_s:,.0f}",
                f"{drain.cpu_ms_per_1000:.1f}",
                f"{drain.cpu_ms_per_s:.0f}",
                idle,
                f"{drain.emulator_cpu_ms_per_1000:.1f}",
                peak,
                f"{drain.span.others_cores:.2f}",
            )
        widths = (8, 18, 9, 14, 22, 9, 12)
        print(
            f"  {drain.consumer:<14} "
            + " ".join(f"{value:>{width}}" for value, width in zip(figures, widths, strict=True))
        )
    print(
        "  (CPU ms/s: the consumer's while it drained, beside idle CPU ms/s, its own once its "
        "backlog was stored;\n  others busy: the cores of "
        f"{os.cpu_count()} that the rest of the machine kept busy on average meanwhile)"
    )
    print(
        f"\n  {'consumer':<14} {'quote rows':>11} {'dead letters':>13} {'lost':>5} "
        f"{'duplicates':>11}  exactly once"
    )
    for drain in drains:
        print(
            f"  {drain.consumer:<14} {drain.quote_rows:>11,} {drain.dead_letters:>13,} "
            f"{drain.lost:>5,} {drain.duplicates:>11,}  {'yes' if drain.clean else 'NO'}"
        )
    by_name = {drain.consumer: drain for drain in drains}
    pairs = [
        (STORAGE_WRITE, INSERT_ALL),
        (INSERT_ALL, PLAIN_LOOP),
        (STORAGE_WRITE, PLAIN_LOOP),
    ]
    print()
    for name, against in pairs:
        if name not in by_name or against not in by_name:
            continue
        drain, baseline = by_name[name], by_name[against]
        if not (drain.measured and baseline.measured):
            print(
                f"  {name} / {against}: drained between two polls, too quick to measure; "
                "give it more --messages"
            )
            continue
        print(
            f"  {name} / {against}: rate {_ratio(drain.rows_per_s, baseline.rows_per_s)}, "
            f"CPU per row {_ratio(drain.cpu_ms_per_1000, baseline.cpu_ms_per_1000)}, "
            f"peak memory {_ratio(drain.peak_rss_bytes, baseline.peak_rss_bytes)}"
        )
