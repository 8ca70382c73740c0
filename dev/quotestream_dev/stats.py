"""Percentiles over measured values: the demo's summary and report and the benchmarks use them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: Sequence[float]) -> str:
    millis = [s * 1000 for s in seconds]
    return (
        f"p50 {percentile(millis, 0.5):.2f} ms  p95 {percentile(millis, 0.95):.2f} ms  "
        f"p99 {percentile(millis, 0.99):.2f} ms  mean {statistics.fmean(millis):.2f} ms"
    )
