"""The run report as a PNG: throughput and latency over the run, and the 1-minute bars."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quotestream.domain.ledger import Bar, LoadedQuote, PublishedMessage
from quotestream_dev.stats import percentile

if TYPE_CHECKING:
    from matplotlib.axes import Axes

BUCKET_S = 5


def write_report(
    path: Path,
    title: str,
    start_ms: int,
    published: Sequence[PublishedMessage],
    loaded: Sequence[LoadedQuote],
    bars: Sequence[Bar],
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    pairs = sorted({bar.pair for bar in bars} | {quote.pair for quote in loaded})
    columns = 3
    pair_rows = max(1, math.ceil(len(pairs) / columns))
    figure = plt.figure(figsize=(13, 6 + 2.6 * pair_rows), layout="constrained")
    grid = figure.add_gridspec(2 + pair_rows, columns, height_ratios=[1.2, 1.2] + [1] * pair_rows)
    figure.suptitle(title)

    throughput = figure.add_subplot(grid[0, :])
    for label, times in (
        ("published (Pub/Sub)", [m.publish_ms for m in published]),
        ("loaded (BigQuery)", [q.ingest_ms for q in loaded]),
    ):
        seconds, rates = _per_second(times, start_ms)
        throughput.plot(seconds, rates, label=label, linewidth=1.2)
    throughput.set_ylabel("messages / s")
    throughput.set_xlabel("seconds since start")
    throughput.legend(loc="upper left")
    throughput.set_title("Throughput")

    latency = figure.add_subplot(grid[1, :])
    points = sorted(
        ((q.ingest_ms - start_ms) / 1000, (q.ingest_ms - q.event_ms) / 1000) for q in loaded
    )
    if points:
        latency.scatter(
            [x for x, _ in points], [y for _, y in points], s=4, alpha=0.3, label="each quote"
        )
        for fraction, style in ((0.5, "-"), (0.95, "--")):
            xs, ys = _bucketed(points, fraction)
            latency.plot(xs, ys, style, linewidth=1.5, label=f"p{round(fraction * 100)}")
        latency.legend(loc="upper left")
    latency.set_ylabel("tick -> row in BigQuery (s)")
    latency.set_xlabel("seconds since start")
    latency.set_title("End-to-end latency")

    for index, pair in enumerate(pairs):
        axis = figure.add_subplot(grid[2 + index // columns, index % columns])
        _candles(axis, [bar for bar in bars if bar.pair == pair], start_ms)
        axis.set_title(f"{pair} 1-minute bars (mid)", fontsize=9)
        axis.tick_params(labelsize=7)

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _per_second(times_ms: Sequence[int], start_ms: int) -> tuple[list[int], list[int]]:
    counts = Counter((t - start_ms) // 1000 for t in times_ms)
    if not counts:
        return [], []
    seconds = list(range(min(counts), max(counts) + 1))
    return seconds, [counts.get(second, 0) for second in seconds]


def _bucketed(
    points: Sequence[tuple[float, float]], fraction: float
) -> tuple[list[float], list[float]]:
    buckets: dict[int, list[float]] = {}
    for x, y in points:
        buckets.setdefault(int(x // BUCKET_S), []).append(y)
    keys = sorted(buckets)
    return [(k + 0.5) * BUCKET_S for k in keys], [percentile(buckets[k], fraction) for k in keys]


def _candles(axis: Axes, bars: Sequence[Bar], start_ms: int) -> None:
    for bar in bars:
        x = (bar.window_start_ms - start_ms) / 60_000
        color = "tab:green" if bar.close >= bar.open else "tab:red"
        axis.vlines(x, bar.low, bar.high, color=color, linewidth=1)
        # A flat minute still gets a visible body.
        body = abs(bar.close - bar.open) or (bar.high - bar.low) / 50 or 1e-9
        axis.bar(x, body, bottom=min(bar.open, bar.close), width=0.6, color=color)
    axis.set_xlabel("minutes since start", fontsize=7)
    if not bars:
        axis.text(0.5, 0.5, "no bar closed yet", ha="center", va="center", transform=axis.transAxes)
