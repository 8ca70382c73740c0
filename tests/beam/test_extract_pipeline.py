"""The extract pipeline end to end on the DirectRunner: the API process -> Beam (periodic
impulse, keyed cursors) -> the Pub/Sub emulator; each quote published once, with no gap."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from quotestream.adapters.local.processes import (
    ServiceProcess,
    free_port,
    start_api_process,
    start_service,
)
from quotestream.domain import PAIR_CATALOG, parse_quote
from quotestream.domain.market import MarketSimulator
from tests.support.pubsub_helpers import (
    PROJECT,
    Received,
    drain,
    make_topic_with_subscription,
)

pytestmark = pytest.mark.integration

SEED = 4242
PAIRS = ["USD-BRL", "EUR-USD", "BTC-USD"]
QUOTES_PER_PAIR = 10


def _every_pair_has(received: list[Received], count: int) -> bool:
    pairs = Counter(parse_quote(m.data, m.attributes).pair for m in received)
    return all(pairs[pair] >= count for pair in PAIRS)


def test_extraction_publishes_every_quote_once(
    pubsub_emulator: ServiceProcess, logs_dir: Path
) -> None:
    topic, subscription = make_topic_with_subscription("extract")
    port = free_port()
    env = {
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.address,
        "QUOTESTREAM_PROJECT": PROJECT,
        "QUOTESTREAM_QUOTES_TOPIC": topic,
        "QUOTESTREAM_MARKET_SEED": str(SEED),
        "QUOTESTREAM_PAIRS": ",".join(PAIRS),
        "QUOTESTREAM_API_URL": f"http://127.0.0.1:{port}",
    }
    api = start_api_process(port, logs_dir / "extract-api.log", env)
    try:
        job = start_service(
            "extract",
            [
                sys.executable,
                "-m",
                "quotestream.entrypoints.cli",
                "pipeline",
                "run",
                "extract",
                "--runner=DirectRunner",
                "--poll_interval_s=0.5",
                "--poll_lag_s=1",
                "--env-file=/nonexistent",
            ],
            host="127.0.0.1",
            port=0,
            log_path=logs_dir / "extract-pipeline.log",
            ready=lambda: True,
            env=env,
        )
        # Pulled while the job runs, until every pair has QUOTES_PER_PAIR (a busy machine
        # starts Beam slowly), then whatever the stopped job still published.
        received = []
        deadline = time.monotonic() + 180
        while not _every_pair_has(received, QUOTES_PER_PAIR):
            assert time.monotonic() < deadline, f"{len(received)} quotes after 180 s"
            received += drain(subscription, expected=1, quiet_seconds=0.5, timeout=5)
        job.stop()
    finally:
        api.stop()
    received += drain(subscription, expected=0, quiet_seconds=2, timeout=30)
    quotes = [parse_quote(m.data, m.attributes) for m in received]
    assert Counter(q.event_id for q in quotes).most_common(1)[0][1] == 1, "published twice"
    market = MarketSimulator(SEED, PAIR_CATALOG)
    for pair in PAIRS:
        times = sorted(q.event_ts_ms for q in quotes if q.pair == pair)
        assert len(times) >= QUOTES_PER_PAIR, f"{pair}: {len(times)} quotes"
        expected = [
            q.event_ts_ms
            for _, q in market.quotes_between(PAIR_CATALOG[pair], times[0], times[-1] + 1)
        ]
        assert times == expected, f"{pair}: a gap in what was published"
