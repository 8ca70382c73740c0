"""An endless tick source that a long-running job on Beam's local runner can afford.

Beam's local runner (the FnApiRunner the DirectRunner picks for our streaming pipelines) runs
a deferred restriction again at once instead of at its resume time, so PeriodicImpulse spins:
about 300 bundles a second, a core busy while nothing happens. And the runner keeps every
bundle's metrics in an ever longer chain of lazy generators, one link per bundle: an idle load
job grew 150 MB -> 1.2 GB in 70 s. `Ticks(paced=True)` waits for the next tick inside the
restriction (one bundle per tick), and `bound_local_runner_metrics` makes the runner fold its
metrics as it goes. Dataflow honours resume times: there `Ticks` is plain PeriodicImpulse.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import monitoring_infos
from apache_beam.pvalue import PBegin, PCollection
from apache_beam.transforms.periodicsequence import (
    ImpulseSeqGenDoFn,
    ImpulseSeqGenRestrictionProvider,
    PeriodicImpulse,
)
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

_RESTRICTION = beam.DoFn.RestrictionParam(ImpulseSeqGenRestrictionProvider())
_WATERMARK = beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())


class PacedImpulseSeqGenDoFn(ImpulseSeqGenDoFn):
    """PeriodicImpulse's generator, sleeping until the next tick is due (at most one interval)
    before it claims, so each bundle emits a tick instead of returning empty at once."""

    @beam.DoFn.unbounded_per_element()  # type: ignore[untyped-decorator]
    def process(
        self,
        element: tuple[Any, Any, float],
        restriction_tracker: Any = _RESTRICTION,
        watermark_estimator: Any = _WATERMARK,
    ) -> Iterator[Any]:
        start, _, interval = element
        start_s = start.micros / 1_000_000 if isinstance(start, Timestamp) else start
        due_s = start_s + interval * restriction_tracker.current_restriction().start
        time.sleep(min(max(due_s - time.time(), 0.0), interval))
        yield from super().process(element, restriction_tracker, watermark_estimator)


class Ticks(beam.PTransform[Any, Any]):
    """PBegin -> the tick's timestamp every `interval_s`, forever."""

    def __init__(self, interval_s: float, *, paced: bool) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._paced = paced

    def expand(self, begin: PBegin) -> PCollection[Any]:
        if not self._paced:
            return begin | "Impulse" >> PeriodicImpulse(fire_interval=self._interval_s)
        return (
            begin
            | "Start" >> beam.Create([(Timestamp.now(), MAX_TIMESTAMP, self._interval_s)])
            | "Generate" >> beam.ParDo(PacedImpulseSeqGenDoFn())
        )


def bound_local_runner_metrics() -> None:
    """Make the local runner fold each bundle's metrics into a list as it goes, instead of
    chaining one more generator per bundle (which it evaluates only when the job ends)."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    current = getattr(fn_runner, "consolidate_monitoring_infos", None)
    if current is _consolidated:
        return
    if current is not monitoring_infos.consolidate:
        # A Beam that no longer folds metrics this way: the fix would silently do nothing.
        raise RuntimeError(
            "apache_beam's FnApiRunner changed: re-check the local job memory fix (beam/ticks.py)"
        )
    setattr(fn_runner, "consolidate_monitoring_infos", _consolidated)  # noqa: B010


def _consolidated(metrics: Iterable[Any], key: Any = monitoring_infos.to_key) -> list[Any]:
    return list(monitoring_infos.consolidate(metrics, key))
