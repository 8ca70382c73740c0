"""A load job launched as the DAGs launch it keeps a bounded resident size, idle and busy: a
streaming job runs for days. (Beam's local runner once made an idle job grow ~14 MB/s.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream import bootstrap
from quotestream.domain import PAIR_CATALOG
from quotestream.ports.jobs import StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream_dev.bench.procfs import group_rss_bytes
from quotestream_dev.synthetic import fresh_quote
from tests.support.local_runs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD = JOB_NAMES["load"]
PHASE_S = 60
WARM_UP_S = 20
BUSY_RATE = 200
MIB = 2**20
# What a phase may add after its warm-up: the leak added ~14 MB/s, so over 40 s ~560 MB.
GROWTH_BOUND = 40 * MIB
PEAK_BOUND = 700 * MIB


def test_an_idle_then_busy_load_job_keeps_a_bounded_resident_size(
    job_target: Any,
) -> None:
    settings = job_target("memory")
    runner = bootstrap.build_job_runner(settings)
    warehouse = bootstrap.build_warehouse(settings)
    job = runner.launch(LOAD, "load", [])
    group = {"load": int(job.job_id)}

    def resident() -> int:
        return group_rss_bytes(group)["load"]

    try:
        idle = _phase(resident, lambda: None)
        publisher = PublisherClient()
        topic = publisher.topic_path(settings.project, settings.quotes_topic)
        specs = list(PAIR_CATALOG.values())
        published: list[str] = []

        def publish_a_tick() -> None:
            # A quarter second's worth, so the rate holds without a thread of its own.
            futures = []
            for _ in range(BUSY_RATE // 4):
                quote = fresh_quote(
                    specs[len(published) % len(specs)], len(published), f"memory-{len(published)}"
                )
                futures.append(
                    publisher.publish(topic, quote.to_json(), **quote.pubsub_attributes())
                )
                published.append(quote.event_id)
            for future in futures:
                future.result(timeout=30)

        busy = _phase(resident, publish_a_tick, every_s=0.25)

        def stored() -> int:
            row = warehouse.query("SELECT COUNT(DISTINCT event_id) AS n FROM {dataset}.quotes")
            return int(row[0]["n"] or 0)

        wait_until(lambda: stored() == len(published), 120, "every busy quote to be stored")
    finally:
        runner.stop(LOAD, StopMode.CANCEL)

    for name, samples in (("idle", idle), ("busy", busy)):
        figures = ", ".join(f"{at:.0f}s {size / MIB:.0f}" for at, size in samples)
        print(f"load job resident MiB, {name}: {figures}")
    print(f"busy: {len(published):,} quotes published at {BUSY_RATE}/s, all stored")
    for name, samples in (("idle", idle), ("busy", busy)):
        after_warm_up = [size for at, size in samples if at >= WARM_UP_S]
        growth = after_warm_up[-1] - after_warm_up[0]
        assert growth < GROWTH_BOUND, f"{name}: grew {growth / MIB:.0f} MiB after warm-up"
        assert max(size for _, size in samples) < PEAK_BOUND, f"{name}: peak over the bound"


def _phase(
    resident: Callable[[], int], step: Callable[[], None], every_s: float = 1.0
) -> list[tuple[float, int]]:
    """Run `step` every `every_s` for PHASE_S seconds; resident size every 5 s."""
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    next_sample = 0.0
    while (elapsed := time.monotonic() - start) < PHASE_S:
        if elapsed >= next_sample:
            samples.append((elapsed, resident()))
            next_sample += 5
        step()
        time.sleep(max(0.0, every_s - (time.monotonic() - start - elapsed)))
    samples.append((time.monotonic() - start, resident()))
    return samples
