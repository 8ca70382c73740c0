"""Data-quality checks of an interval; every result becomes a row of `dq_results`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from quotestream.domain.ledger import Bar
from quotestream.domain.pairs import PAIR_CATALOG, cross_legs, ticks_per_s
from quotestream.domain.quote import format_ts, now_ms, to_ms
from quotestream.domain.schemas import DQ_RESULTS
from quotestream.ports import QuoteQueries, QuoteSource, Warehouse
from quotestream.ports.queries import MidMoves, MinuteSummary, PairTicks

MINUTE_MS = 60_000
# A normal distribution's standard deviation is 1.4826 times its median absolute deviation.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class CheckResult:
    check_name: str
    passed: bool
    observed: float
    threshold: float
    details: str
    pair: str | None = None

    def __str__(self) -> str:
        where = f" {self.pair}" if self.pair else ""
        verdict = "ok  " if self.passed else "FAIL"
        return f"{verdict} {self.check_name}{where}: {self.details}"


@dataclass(frozen=True, slots=True)
class Thresholds:
    freshness_s: float = 300.0
    min_volume_ratio: float = 0.9
    max_dead_letter_ratio: float = 0.01
    # A cross's close may be off its legs' product by this many times the minute's tolerance
    # (the three spreads, ranges and price quanta, relative): the simulator stays under 0.1.
    max_cross_rate_ratio: float = 1.0
    # Robust deviations a tick-to-tick move may reach: the simulator peaks near 5 in 6 hours.
    max_jump_deviations: float = 8.0
    # A pair is stale when its newest quote trails the newest of all by this many intervals.
    stale_after_intervals: float = 10.0
    # The simulator ticks inside the first half of each interval: 1.5 intervals at most apart.
    max_gap_intervals: float = 1.5
    max_missing_ticks: int = 0


class DataQualityFailed(RuntimeError):
    def __init__(self, failures: Sequence[CheckResult]) -> None:
        super().__init__("; ".join(str(failure) for failure in failures))
        self.failures = list(failures)


class DataQualityService:
    """The checks ask their questions of `queries`; the results are written to `warehouse`."""

    def __init__(
        self,
        queries: QuoteQueries,
        warehouse: Warehouse,
        source: QuoteSource,
        pairs: Sequence[str],
        thresholds: Thresholds = Thresholds(),
    ) -> None:
        self._queries = queries
        self._warehouse = warehouse
        self._source = source
        self._pairs = list(pairs)
        self._thresholds = thresholds

    def run(
        self, start: datetime, end: datetime, run_id: str, *, check_freshness: bool = True
    ) -> list[CheckResult]:
        """Run every check of [start, end), record each result, raise if any failed."""
        results = [
            *self._per_pair(start, end),
            self._bid_not_above_ask(start, end),
            self._no_duplicates(start, end),
            self._no_nulls(start, end),
            self._dead_letter_ratio(start, end),
            *self._market_checks(start, end),
        ]
        if check_freshness:
            results.append(self._freshness())
        self._record(results, start, end, run_id)
        failures = [result for result in results if not result.passed]
        if failures:
            raise DataQualityFailed(failures)
        return results

    def _per_pair(self, start: datetime, end: datetime) -> list[CheckResult]:
        counts = self._queries.distinct_quotes_per_pair(start, end)
        results = []
        seconds = (end - start).total_seconds()
        for pair in self._pairs:
            loaded = counts.get(pair, 0)
            expected_rate = seconds * ticks_per_s([pair])
            ratio = loaded / expected_rate if expected_rate else 1.0
            results.append(
                CheckResult(
                    "volume",
                    ratio >= self._thresholds.min_volume_ratio,
                    ratio,
                    self._thresholds.min_volume_ratio,
                    f"{loaded} quotes, {expected_rate:.0f} expected from the tick rate",
                    pair,
                )
            )
            served = sum(1 for _ in self._source.history(pair, to_ms(start), to_ms(end)))
            results.append(
                CheckResult(
                    "reconciliation",
                    loaded == served,
                    loaded,
                    served,
                    f"{loaded} in BigQuery, {served} in the API's history",
                    pair,
                )
            )
        return results

    def _market_checks(self, start: datetime, end: datetime) -> list[CheckResult]:
        """The checks of how the quotes move: each question asked once for every pair."""
        minutes = self._queries.minute_summaries(start, end)
        moves = {summary.pair: summary for summary in self._queries.mid_moves(start, end)}
        intervals = {pair: PAIR_CATALOG[pair].tick_interval_ms for pair in self._pairs}
        ticks = self._queries.pair_ticks(start, end, intervals, self._thresholds.max_gap_intervals)
        newest_of_all = max((pair.newest_event_ms for pair in ticks.values()), default=None)
        stored_bars = self._queries.final_bars(start, end)
        results = [
            self._cross_rate(cross, legs, minutes)
            for cross, legs in cross_legs(self._pairs).items()
        ]
        for pair in self._pairs:
            results.append(self._price_jump(pair, moves.get(pair)))
            pair_ticks = ticks.get(pair)
            newest = pair_ticks.newest_event_ms if pair_ticks else None
            results.append(self._stale(pair, newest, newest_of_all, to_ms(start)))
            results.append(self._tick_gaps(pair, pair_ticks))
            results.append(self._bars(pair, minutes, stored_bars, start, end))
        return results

    def _cross_rate(
        self, cross: str, legs: tuple[str, str], minutes: Sequence[MinuteSummary]
    ) -> CheckResult:
        """Each minute, the cross's close against its legs' closes multiplied, in log terms.
        The closes are up to a tick apart, so the tolerance is what the three quotes leave
        open: their relative spreads, how far each moved in the minute, one price quantum."""
        by_minute: dict[int, dict[str, MinuteSummary]] = {}
        for summary in minutes:
            by_minute.setdefault(summary.bar.window_start_ms, {})[summary.bar.pair] = summary
        triangle = (cross, *legs)
        compared, off, worst, worst_detail = 0, 0, 0.0, ""
        for minute_ms, pairs in sorted(by_minute.items()):
            if not all(pair in pairs for pair in triangle):
                continue
            compared += 1
            implied = pairs[legs[0]].bar.close * pairs[legs[1]].bar.close
            deviation = abs(math.log(pairs[cross].bar.close / implied))
            tolerance = sum(_room(pairs[pair], PAIR_CATALOG[pair].mid_scale) for pair in triangle)
            ratio = deviation / tolerance
            off += ratio > self._thresholds.max_cross_rate_ratio
            if ratio > worst:
                worst = ratio
                worst_detail = (
                    f"; worst at {format_ts(minute_ms)[11:16]}: {pairs[cross].bar.close:g} "
                    f"against {implied:.6g} implied, {deviation * 1e4:.1f} bp off, "
                    f"tolerance {tolerance * 1e4:.1f} bp"
                )
        return CheckResult(
            "cross_rate",
            off == 0,
            worst,
            self._thresholds.max_cross_rate_ratio,
            f"{off} of {compared} minutes off {legs[0]} x {legs[1]}{worst_detail}",
            cross,
        )

    def _price_jump(self, pair: str, moves: MidMoves | None) -> CheckResult:
        limit = self._thresholds.max_jump_deviations
        if moves is None:
            return CheckResult("price_jump", True, 0.0, limit, "fewer than two ticks", pair)
        # A quiet pair's MAD can be 0: one price quantum is then the smallest move it can make.
        quantum = 10.0 ** -PAIR_CATALOG[pair].mid_scale / moves.lowest_mid
        robust = max(MAD_TO_SIGMA * moves.mad, quantum)
        largest = moves.largest_deviation / robust
        return CheckResult(
            "price_jump",
            largest <= limit,
            largest,
            limit,
            f"largest of {moves.moves} moves {largest:.1f} robust deviations "
            f"({moves.largest_deviation * 1e4:.2f} bp) at {format_ts(moves.largest_at_ms)}",
            pair,
        )

    def _stale(
        self, pair: str, newest: int | None, newest_of_all: int | None, start_ms: int
    ) -> CheckResult:
        interval_s = PAIR_CATALOG[pair].tick_interval_ms / 1000
        limit = self._thresholds.stale_after_intervals * interval_s
        if newest_of_all is None:
            return CheckResult("stale_pair", True, 0.0, limit, "no pair quoted at all", pair)
        behind = (newest_of_all - (newest if newest is not None else start_ms)) / 1000
        since = f"newest quote {format_ts(newest)}" if newest is not None else "no quote"
        return CheckResult(
            "stale_pair",
            behind <= limit,
            behind,
            limit,
            f"{since}, {behind:.1f} s behind the newest of all pairs",
            pair,
        )

    def _tick_gaps(self, pair: str, ticks: PairTicks | None) -> CheckResult:
        limit = self._thresholds.max_missing_ticks
        if ticks is None:
            return CheckResult("tick_gaps", True, 0, limit, "no ticks (see volume)", pair)
        longest = ""
        if ticks.longest_gap_end_ms is not None:
            longest = (
                f"; longest {ticks.longest_gap_ms / 1000:g} s, to "
                f"{format_ts(ticks.longest_gap_end_ms)}"
            )
        return CheckResult(
            "tick_gaps",
            ticks.missing_ticks <= limit,
            ticks.missing_ticks,
            limit,
            f"{ticks.gaps} gaps over {self._thresholds.max_gap_intervals:g} intervals of "
            f"{PAIR_CATALOG[pair].tick_interval_ms} ms, {ticks.missing_ticks} ticks missing "
            f"of {ticks.ticks}{longest}",
            pair,
        )

    def _bars(
        self,
        pair: str,
        minutes: Sequence[MinuteSummary],
        stored_bars: Sequence[Bar],
        start: datetime,
        end: datetime,
    ) -> CheckResult:
        """The final pane of each stored bar against the bar recomputed from `quotes`, for the
        whole minutes of the interval. Reported, not failed: a minute without a stored bar (a
        backfill loads quotes only), and a bar of fewer ticks whose prices lie within the
        quotes' (a load drained and relaunched writes a minute in two partial bars; quotes a
        backfill or a replay added later, or that came too late for their bar, are in no
        bar). Failed: a bar that no quotes explain."""
        first, last = -(-to_ms(start) // MINUTE_MS) * MINUTE_MS, to_ms(end) - MINUTE_MS

        def whole(bar: Bar) -> bool:
            return bar.pair == pair and first <= bar.window_start_ms <= last

        recomputed = {s.bar.window_start_ms: s.bar for s in minutes if whole(s.bar)}
        stored = {bar.window_start_ms: bar for bar in stored_bars if whole(bar)}
        differ: list[int] = []
        partial = 0
        for minute_ms, bar in sorted(stored.items()):
            found = recomputed.get(minute_ms)
            if found is not None and _partial_bar(bar, found):
                partial += 1
            elif found is None or not _same_bar(bar, found):
                differ.append(minute_ms)
        unbarred = len(recomputed.keys() - stored.keys())
        first_differing = ""
        if differ:
            minute_ms = differ[0]
            found = recomputed.get(minute_ms)
            first_differing = (
                f"; first at {format_ts(minute_ms)[11:16]}: stored {_ohlc(stored[minute_ms])}, "
                f"from quotes {_ohlc(found) if found else 'no quotes'}"
            )
        return CheckResult(
            "bars",
            not differ,
            len(differ),
            0,
            f"{len(stored)} stored bars, {len(differ)} differ from their quotes, {partial} hold "
            f"part of their quotes, {unbarred} minutes of quotes without a bar{first_differing}",
            pair,
        )

    def _bid_not_above_ask(self, start: datetime, end: datetime) -> CheckResult:
        crossed = self._queries.crossed_quotes(start, end)
        return CheckResult("bid_le_ask", crossed == 0, crossed, 0, f"{crossed} crossed rows")

    def _no_duplicates(self, start: datetime, end: datetime) -> CheckResult:
        extra = self._queries.duplicate_quote_rows(start, end)
        return CheckResult("duplicates", extra == 0, extra, 0, f"{extra} duplicate rows")

    def _no_nulls(self, start: datetime, end: datetime) -> CheckResult:
        nulls = self._queries.quotes_with_nulls(start, end)
        return CheckResult("nulls", nulls == 0, nulls, 0, f"{nulls} rows with nulls")

    def _dead_letter_ratio(self, start: datetime, end: datetime) -> CheckResult:
        dead = self._queries.dead_letters_received(start, end)
        good = self._queries.quotes_ingested(start, end)
        ratio = dead / (dead + good) if dead + good else 0.0
        limit = self._thresholds.max_dead_letter_ratio
        return CheckResult(
            "dead_letter_ratio",
            ratio <= limit,
            ratio,
            limit,
            f"{dead} dead letters against {good} loaded",
        )

    def _freshness(self) -> CheckResult:
        newest = self._queries.newest_event_ms()
        age = (now_ms() - newest) / 1000 if newest else float("inf")
        limit = self._thresholds.freshness_s
        detail = f"newest quote {age:.0f} s old" if newest else "no quotes at all"
        return CheckResult("freshness", age <= limit, age, limit, detail)

    def _record(
        self, results: Sequence[CheckResult], start: datetime, end: datetime, run_id: str
    ) -> None:
        checked = format_ts(now_ms())
        rows = [
            {
                "check_name": result.check_name,
                "interval_start": format_ts(to_ms(start)),
                "interval_end": format_ts(to_ms(end)),
                "pair": result.pair,
                "passed": result.passed,
                "observed": result.observed if result.observed != float("inf") else None,
                "threshold": result.threshold,
                "details": result.details,
                "run_id": run_id,
                "checked_ts": checked,
            }
            for result in results
        ]
        ids = [f"{run_id}|{row['check_name']}|{row['pair'] or ''}" for row in rows]
        errors = self._warehouse.insert_rows(DQ_RESULTS.name, rows, ids)
        if errors:
            raise RuntimeError(f"dq_results refused rows: {errors}")


def _room(summary: MinuteSummary, mid_scale: int) -> float:
    """How far, relative, a pair's closing mid may be from its price at another instant of the
    minute: its spread, the minute's range, one price quantum."""
    bar = summary.bar
    quantum = 10.0**-mid_scale
    return (summary.close_spread + quantum) / bar.close + math.log(bar.high / bar.low)


def _same_bar(stored: Bar, recomputed: Bar) -> bool:
    prices = zip(
        (stored.open, stored.high, stored.low, stored.close),
        (recomputed.open, recomputed.high, recomputed.low, recomputed.close),
        strict=True,
    )
    # Both sides are the same NUMERIC digits read as FLOAT64: equal up to the conversion.
    same_prices = all(math.isclose(a, b, rel_tol=1e-12) for a, b in prices)
    return same_prices and stored.tick_count == recomputed.tick_count


def _partial_bar(stored: Bar, recomputed: Bar) -> bool:
    """Fewer ticks than the minute's quotes, and prices within theirs: a bar of some of them."""
    return (
        stored.tick_count < recomputed.tick_count
        and stored.high <= recomputed.high * (1 + 1e-12)
        and stored.low >= recomputed.low * (1 - 1e-12)
    )


def _ohlc(bar: Bar) -> str:
    return f"{bar.open:g}/{bar.high:g}/{bar.low:g}/{bar.close:g} x{bar.tick_count}"
