"""Every limit the project judges by, in two families side by side: what alerts (Cloud
Monitoring's policies and the streaming health verdict) and what fails a data-quality check.
Each family is overridden by name from its own setting (QUOTESTREAM_ALERT_THRESHOLDS,
QUOTESTREAM_QUALITY_THRESHOLDS); no name is in both, so a limit never reads as the other
family's (the alerts' dead-letter ratio is of the load job's messages, 5 %; the checks' of
an interval's rows, 1 %)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Self


class _Family:
    """What both families do alike: name their limits, and take overrides by those names."""

    __slots__ = ()
    # How an override's errors name the family, and whether a limit of 0 (nothing allowed)
    # makes sense in it.
    family: ClassVar[str]
    zero_allowed: ClassVar[bool]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))  # type: ignore[arg-type]

    def overridden(self, overrides: Mapping[str, float]) -> Self:
        """These thresholds with `overrides` (by field name) in place, names and values checked."""
        names = self.names()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(
                f"unknown {self.family} {', '.join(unknown)}; known: {', '.join(names)}"
            )
        floor_broken = [
            name
            for name, value in overrides.items()
            if value < 0 or (value == 0 and not self.zero_allowed)
        ]
        if floor_broken:
            must = "must not be negative" if self.zero_allowed else "must be positive"
            raise ValueError(f"{self.family} {must}: {', '.join(sorted(floor_broken))}")
        return replace(self, **overrides)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class AlertThresholds(_Family):
    family: ClassVar[str] = "alert thresholds"
    zero_allowed: ClassVar[bool] = False

    max_system_lag_s: float = 300.0
    # Dataflow's data freshness (watermark age); locally, the age of the newest loaded quote.
    max_data_freshness_s: float = 300.0
    max_undelivered_messages: float = 50_000
    max_oldest_unacked_s: float = 600.0
    # Dead-lettered (by the gate, or refused by BigQuery) over received messages of the load
    # job, over the last dead_letter_window_s: the local verdict's window and the alert's.
    max_dead_letter_ratio: float = 0.05
    dead_letter_window_s: float = 900.0
    max_api_5xx_per_s: float = 0.5
    # How long a pair's extract may read its fallback source before it alerts: a switch is
    # logged and counted at once, but a primary back within minutes needs no one.
    max_on_fallback_s: float = 600.0


@dataclass(frozen=True, slots=True)
class QualityThresholds(_Family):
    family: ClassVar[str] = "quality thresholds"
    zero_allowed: ClassVar[bool] = True

    # The newest quote of all may be this old when a recent hour is checked.
    freshness_s: float = 300.0
    # Distinct quotes of a pair against its tick rate.
    min_volume_ratio: float = 0.9
    # Dead letters received in the checked interval over those and the quote rows written in it.
    max_interval_dead_letter_ratio: float = 0.01
    # A cross's close may be off its legs' product by this many times the minute's tolerance
    # (the three spreads, ranges and price quanta, relative): the simulator stays under 0.1.
    max_cross_rate_ratio: float = 1.0
    # Robust deviations a tick-to-tick move may reach: the simulator peaks near 5 in 6 hours.
    max_jump_deviations: float = 8.0
    # A pair is stale when its newest quote trails the newest of all by this many intervals.
    stale_after_intervals: float = 10.0
    # The simulator ticks inside the first half of each interval: 1.5 intervals at most apart.
    max_gap_intervals: float = 1.5
    max_missing_ticks: float = 0
    # Where another source (OANDA's stream) served, a gap with its tick at either end: a real
    # feed has no tick schedule and may be quiet for tens of seconds in a calm market.
    max_feed_gap_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Both families, as the settings configure them (Settings.thresholds())."""

    alerting: AlertThresholds = AlertThresholds()
    quality: QualityThresholds = QualityThresholds()
