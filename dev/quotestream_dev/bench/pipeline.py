"""`quotestream bench pipeline`: the gate against pydantic, then the local load path end to
end (Pub/Sub emulator -> load pipeline on the DirectRunner -> BigQuery emulator)."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from quotestream.adapters.local.processes import (
    ServiceProcess,
    start_pipeline_process,
)
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import now_ms
from quotestream.domain.validation import parse_quote
from quotestream.ports.queries import AccountingQueries
from quotestream_dev.bench.emulators import start_emulators
from quotestream_dev.stats import percentile
from quotestream_dev.synthetic import fresh_quote, market_quotes


def run(gate_messages: int, rate: float, seconds: float, repo_root: Path) -> int:
    gate(gate_messages)
    end_to_end(rate, seconds, repo_root)
    return 0


def gate(count: int) -> None:
    from pydantic import BaseModel, ConfigDict

    class PydanticQuote(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        event_id: str
        pair: str
        base: str
        quote_currency: str
        bid: Decimal
        ask: Decimal
        mid: Decimal
        spread: Decimal
        event_ts: str
        source: str

    messages = [quote.to_json() for quote in market_quotes(count, now_ms() - 60_000)]
    print(f"gate: {len(messages):,} quote messages, one core, best of 3")
    ours = _best_rate(lambda: [parse_quote(m) for m in messages], len(messages))
    baseline = _best_rate(
        lambda: [PydanticQuote.model_validate_json(m) for m in messages], len(messages)
    )
    print(f"  parse_quote (full validation)       {ours:>12,.0f} quotes/s")
    print(f"  pydantic model_validate_json (types) {baseline:>11,.0f} quotes/s")
    print(f"  ratio parse_quote / pydantic         {ours / baseline:>11.2f}x")


def _best_rate(work: Any, count: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def end_to_end(rate: float, seconds: float, repo_root: Path) -> None:
    from google.cloud.pubsub_v1 import PublisherClient

    from quotestream import bootstrap
    from quotestream.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="quotestream-bench-"))
    total = int(rate * seconds)
    print(
        f"\nend to end: {total:,} quotes at {rate:,.0f}/s -> Pub/Sub emulator -> load pipeline "
        f"(DirectRunner) -> BigQuery emulator; logs in {work}"
    )
    services: list[ServiceProcess] = []
    try:
        env = {
            **start_emulators(work, repo_root, services),
            "QUOTESTREAM_PROJECT": f"bench-{uuid.uuid4().hex[:6]}",
        }
        os.environ.update(env)
        settings = Settings()
        bootstrap.build_provision_service(settings).run()
        job = start_pipeline_process(repo_root, "load", work / "load.log", env)
        services.append(job)
        queries = bootstrap.build_accounting_queries(settings)
        publisher = PublisherClient()
        topic = publisher.topic_path(settings.project, settings.quotes_topic)

        event_ms: dict[str, int] = {}
        seen_ms: dict[str, int] = {}
        ingest_latency: list[float] = []
        started = time.monotonic()
        specs = list(PAIR_CATALOG.values())
        next_poll = started + 0.5
        for index in range(total):
            due = started + index / rate
            while (now := time.monotonic()) < due:
                time.sleep(min(0.005, due - now))
            quote = fresh_quote(specs[index % len(specs)], index, f"bench{index}")
            event_ms[quote.event_id] = quote.event_ts_ms
            publisher.publish(topic, quote.to_json(), **quote.pubsub_attributes())
            if time.monotonic() >= next_poll:
                _poll(queries, seen_ms, ingest_latency)
                next_poll = time.monotonic() + 0.5
            if index and index % int(rate * 5) == 0:
                print(f"  published {index:,}, queryable {len(seen_ms):,}")
        deadline = time.monotonic() + 180
        while len(seen_ms) < total and time.monotonic() < deadline:
            _poll(queries, seen_ms, ingest_latency)
            time.sleep(0.5)
        elapsed = max(seen_ms.values(), default=0) / 1000 - (
            started - time.monotonic() + time.time()
        )
        queryable = [(seen_ms[e] - event_ms[e]) / 1000 for e in seen_ms if e in event_ms]
        missing = total - len(seen_ms)
        print(
            f"  rows queryable: {len(seen_ms):,} of {total:,}"
            + (f" ({missing:,} not queryable within 180 s of the last publish)" if missing else "")
        )
        print(f"  sustained: {len(seen_ms) / max(elapsed, 1e-9):,.0f} rows/s over {elapsed:.1f} s")
        for label, values in (
            ("event -> row written", ingest_latency),
            ("event -> row queryable", queryable),
        ):
            print(
                f"  {label:<24} p50 {percentile(values, 0.5):6.2f} s  "
                f"p95 {percentile(values, 0.95):6.2f} s  p99 {percentile(values, 0.99):6.2f} s"
            )
    finally:
        for service in reversed(services):
            service.stop()


def _poll(queries: AccountingQueries, seen_ms: dict[str, int], ingest_latency: list[float]) -> None:
    # Only rows written lately: a full scan every poll would load the emulator more and more.
    since = now_ms() - 30_000
    loaded = queries.loaded_quotes_since(since)
    now = now_ms()
    for quote in loaded:
        if quote.event_id not in seen_ms:
            seen_ms[quote.event_id] = now
            ingest_latency.append((quote.ingest_ms - quote.event_ms) / 1000)
