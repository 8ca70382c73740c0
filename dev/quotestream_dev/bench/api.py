"""`quotestream bench api`: the push relay against one-client-per-message, and GET latest.

Everything runs here in one go, on loopback: the Pub/Sub emulator, the API server process,
and the load generator, so the figures share one machine state and compare fairly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quotestream.adapters.local.processes import ServiceProcess, free_port, start_api_process
from quotestream.domain.market import MarketSimulator
from quotestream.domain.pairs import PAIR_CATALOG
from quotestream.domain.quote import Quote, now_ms
from quotestream_dev.bench.relay_client import post_until_accepted
from quotestream_dev.stats import summary_ms

PROJECT = "quotestream-bench"
BATCH = 1000
BENCH_KEY = "bench-key-0123456789"


def run(quotes: int, baseline_quotes: int, get_seconds: float) -> int:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

    from quotestream.adapters.gcp.pubsub import PubSubAdmin
    from quotestream.adapters.local.pubsub_emulator import start_pubsub_emulator
    from quotestream.ports.resources import SubscriptionSpec

    work = Path(tempfile.mkdtemp(prefix="quotestream-bench-"))
    print(f"logs: {work}")
    emulator = start_pubsub_emulator(free_port(), work / "pubsub-emulator.log")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.address
    api: ServiceProcess | None = None
    try:
        admin = PubSubAdmin(PROJECT)
        for name in ("relay", "raw", "baseline"):
            admin.ensure_topic(name)
            admin.ensure_subscription(SubscriptionSpec(f"{name}-sub", name))
        api = _start_api(work, emulator)
        market = MarketSimulator(1, PAIR_CATALOG)
        history = _history(market, quotes)
        print(f"\nrelay: POST {len(history)} quotes in batches of {BATCH} -> Pub/Sub emulator")
        waited_out: list[int] = []

        def post_to_relay() -> None:
            for offset in range(0, len(history), BATCH):
                batch = [quote.to_dict() for quote in history[offset : offset + BATCH]]
                _, waited = post_until_accepted(f"http://{api.address}/v1/quotes", batch, BENCH_KEY)
                waited_out.append(waited)

        relay_rate = _rate_to_subscriber(
            post_to_relay, len(history), SubscriberClient(), admin.subscription_path("relay-sub")
        )
        full = sum(waited_out)
        print(f"  {relay_rate:,.0f} quotes/s ({full} answers of 503 relay full waited out)")

        print(f"\nceiling: the same {len(history)} quotes from one batched PublisherClient")
        messages = _write_messages(history, work / "raw-messages.jsonl")
        raw_rate = _rate_to_subscriber(
            lambda: _publish_in_own_process(admin.topic_path("raw"), messages, emulator),
            len(history),
            SubscriberClient(),
            admin.subscription_path("raw-sub"),
        )
        print(f"  {raw_rate:,.0f} quotes/s")

        sample = [market.latest(PAIR_CATALOG["USD-BRL"], 0).to_json()] * baseline_quotes
        print(f"\nbaseline: {len(sample)} quotes, a new publisher client for each message")
        topic = admin.topic_path("baseline")
        started = time.perf_counter()
        for data in sample:
            one_off = PublisherClient()
            one_off.publish(topic, data).result()
            one_off.stop()
        baseline_rate = len(sample) / (time.perf_counter() - started)
        print(f"  {baseline_rate:,.0f} quotes/s")

        print(f"\nGET /v1/quotes/latest (all pairs) for {get_seconds:.0f} s, one keep-alive client")
        latencies = _get_latest(f"http://{api.address}", get_seconds)
        print(f"  {len(latencies) / get_seconds:,.0f} requests/s  {summary_ms(latencies)}")

        print("\nsummary")
        print(f"  relay    {relay_rate:>10,.0f} quotes/s  ({full} x 503, waited out)")
        print(f"  ceiling  {raw_rate:>10,.0f} quotes/s  relay/ceiling {relay_rate / raw_rate:.2f}x")
        ratio = relay_rate / baseline_rate
        print(f"  baseline {baseline_rate:>10,.0f} quotes/s  relay/baseline {ratio:,.1f}x")
        print(f"  GET latest {len(latencies) / get_seconds:,.0f} requests/s")
        admin.close()
        return 0
    finally:
        if api is not None:
            api.stop()
        emulator.stop()


def _start_api(work: Path, emulator: ServiceProcess) -> ServiceProcess:
    port = free_port()
    return start_api_process(
        port,
        work / "api.log",
        {
            "PUBSUB_EMULATOR_HOST": emulator.address,
            "QUOTESTREAM_PROJECT": PROJECT,
            "QUOTESTREAM_QUOTES_TOPIC": "relay",
            "QUOTESTREAM_API_KEY": BENCH_KEY,
            "QUOTESTREAM_MARKET_SEED": "1",
            "QUOTESTREAM_RELAY_CAPACITY": str(10 * BATCH),
            # One client measuring the relay's ceiling, not the per-client rate limit.
            "QUOTESTREAM_RELAY_RATE_LIMIT_PER_S": "0",
        },
    )


def _history(market: MarketSimulator, count: int) -> list[Quote]:
    spec = PAIR_CATALOG["BTC-USD"]
    end = now_ms() - 1000
    start = end - count * spec.tick_interval_ms
    return [quote for _, quote in market.quotes_between(spec, start, end)][:count]


def _rate_to_subscriber(
    publish: Callable[[], None], count: int, subscriber: Any, subscription: str
) -> float:
    """Quotes/s from the start of `publish` to the last of `count` messages a subscriber in
    this process pulls from `subscription`."""
    counter = _Counter(subscriber, subscription)
    counter.start()
    started = time.perf_counter()
    publish()
    counter.wait_for(count, timeout=300)
    return count / (counter.last_seen - started)


def _write_messages(history: list[Quote], path: Path) -> Path:
    """The quotes as the relay publishes them, a JSON line each, for raw_publish to read."""
    with path.open("w", encoding="utf-8") as lines:
        for quote in history:
            data = quote.to_json().decode()
            lines.write(json.dumps({"data": data, "attributes": quote.pubsub_attributes()}))
            lines.write("\n")
    return path


def _publish_in_own_process(topic: str, messages: Path, emulator: ServiceProcess) -> None:
    subprocess.run(  # noqa: S603 - this interpreter, a module of this package
        [sys.executable, "-m", "quotestream_dev.bench.raw_publish", topic, str(messages)],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": emulator.address},
        check=True,
    )


class _Counter(threading.Thread):
    """Counts messages arriving on a subscription, remembering when the last one came."""

    def __init__(self, subscriber: Any, path: str) -> None:
        super().__init__(daemon=True)
        self._subscriber = subscriber
        self._path = path
        self.count = 0
        self.last_seen = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        from google.api_core.exceptions import DeadlineExceeded

        subscriber = self._subscriber
        while not self._stop_event.is_set():
            try:
                response = subscriber.pull(
                    request={"subscription": self._path, "max_messages": 1000}, timeout=5
                )
            except DeadlineExceeded:
                continue
            if not response.received_messages:
                continue
            self.count += len(response.received_messages)
            self.last_seen = time.perf_counter()
            subscriber.acknowledge(
                request={
                    "subscription": self._path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )

    def wait_for(self, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count} of {expected} messages arrived")
            time.sleep(0.02)
        self._stop_event.set()


def _get_latest(base_url: str, seconds: float) -> list[float]:
    import httpx

    latencies: list[float] = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        deadline = time.perf_counter() + seconds
        while True:
            started = time.perf_counter()
            if started > deadline:
                return latencies
            client.get("/v1/quotes/latest").raise_for_status()
            latencies.append(time.perf_counter() - started)
