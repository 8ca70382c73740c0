"""The data-quality checks as data: each check's name, what it measures, the thresholds it
judges by, whether its failure means quotes are missing (a backfill's work), and what runs it.

The quality service runs QUALITY_CHECKS in order, the Quotes pipeline page takes its open gaps
from them (GAP_CHECKS), and the data-quality DAG's docs and docs/operations.md list them
(`checks_table`): a new check is an entry here, its query if it needs a new one, and its test.
Importing this module loads no cloud client, Beam or Airflow: DAG files read it when parsed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from functools import cached_property

from quotestream.domain.ledger import Bar
from quotestream.domain.pairs import PAIR_CATALOG, cross_legs, ticks_per_s
from quotestream.domain.quote import format_ts, now_ms, to_ms
from quotestream.domain.thresholds import QualityThresholds
from quotestream.domain.validation import event_ms_of
from quotestream.ports import QuoteSource
from quotestream.ports.queries import (
    MidMoves,
    MinuteSummary,
    PairTicks,
    QualityQueries,
    ServedSpan,
    TickGapRule,
    served_elsewhere_at,
)

MINUTE_MS = 60_000
# A normal distribution's standard deviation is 1.4826 times its median absolute deviation.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class CheckResult:
    passed: bool
    observed: float
    threshold: float
    details: str
    pair: str | None = None
    # Set by the QualityCheck that ran it, so a check's name is written once, in its entry.
    check_name: str = ""

    def __str__(self) -> str:
        where = f" {self.pair}" if self.pair else ""
        verdict = "ok  " if self.passed else "FAIL"
        return f"{verdict} {self.check_name}{where}: {self.details}"


class CheckedInterval:
    """[start, end) under check: the pairs, the limits, and the warehouse's answers about the
    interval, each question asked at most once however many checks read its answer.
    `api_source` is the `source` of the API's quotes (Settings.quote_source)."""

    def __init__(
        self,
        queries: QualityQueries,
        source: QuoteSource,
        pairs: Sequence[str],
        thresholds: QualityThresholds,
        start: datetime,
        end: datetime,
        api_source: str,
    ) -> None:
        self.queries = queries
        self.source = source
        self.pairs = list(pairs)
        self.thresholds = thresholds
        self.start = start
        self.end = end
        self.api_source = api_source

    @cached_property
    def quotes_per_pair(self) -> dict[str, int]:
        return self.queries.distinct_quotes_per_pair(self.start, self.end)

    @cached_property
    def served_elsewhere(self) -> dict[str, list[ServedSpan]]:
        return self.queries.served_elsewhere(self.start, self.end, self.api_source)

    @cached_property
    def minutes(self) -> list[MinuteSummary]:
        return self.queries.minute_summaries(self.start, self.end)

    @cached_property
    def moves(self) -> dict[str, MidMoves]:
        return {moves.pair: moves for moves in self.queries.mid_moves(self.start, self.end)}

    @cached_property
    def ticks(self) -> dict[str, PairTicks]:
        intervals = {pair: PAIR_CATALOG[pair].tick_interval_ms for pair in self.pairs}
        rule = TickGapRule(
            intervals,
            self.thresholds.max_gap_intervals,
            self.api_source,
            round(self.thresholds.max_feed_gap_s * 1000),
        )
        return self.queries.pair_ticks(self.start, self.end, rule)

    @cached_property
    def stored_bars(self) -> list[Bar]:
        return self.queries.final_bars(self.start, self.end)


Judge = Callable[[CheckedInterval], list[CheckResult]]


@dataclass(frozen=True, slots=True)
class QualityCheck:
    name: str
    # What it compares and when it fails, naming thresholds as {field} (filled in for the docs).
    measures: str
    fails_when: str
    judge: Judge
    # The QualityThresholds fields it judges by (QUOTESTREAM_QUALITY_THRESHOLDS overrides them).
    thresholds: tuple[str, ...] = ()
    # A failure means quotes are missing from the interval: a backfill fills it.
    means_missing_quotes: bool = False
    # Each result is of one pair, or of one triangle of pairs; else of the whole interval.
    per: str = ""
    # Only an interval near now is judged (the DAG's recent hours): the check reads the clock.
    recent_only: bool = False

    def run(self, interval: CheckedInterval) -> list[CheckResult]:
        return [replace(result, check_name=self.name) for result in self.judge(interval)]


def _volume(interval: CheckedInterval) -> list[CheckResult]:
    return [_volume_of(interval, pair) for pair in interval.pairs]


def _volume_of(interval: CheckedInterval, pair: str) -> CheckResult:
    limit = interval.thresholds.min_volume_ratio
    loaded = interval.quotes_per_pair.get(pair, 0)
    expected = (interval.end - interval.start).total_seconds() * ticks_per_s([pair])
    ratio = loaded / expected if expected else 1.0
    detail = f"{loaded} quotes, {expected:.0f} expected from the tick rate"
    return CheckResult(ratio >= limit, ratio, limit, detail, pair)


def _reconciliation(interval: CheckedInterval) -> list[CheckResult]:
    return [_reconciliation_of(interval, pair) for pair in interval.pairs]


def _reconciliation_of(interval: CheckedInterval, pair: str) -> CheckResult:
    """The API's quotes stored against its history, both outside the spans another source
    served: every stored quote of another source is in one, and no quote of the API's."""
    spans = interval.served_elsewhere.get(pair, [])
    elsewhere = sum(span.quotes for span in spans)
    loaded = interval.quotes_per_pair.get(pair, 0) - elsewhere
    history = interval.source.history(pair, to_ms(interval.start), to_ms(interval.end))
    served = sum(1 for quote in history if not (spans and _served_elsewhere(spans, quote)))
    detail = f"{loaded} of the API's in BigQuery, {served} in its history"
    if loaded < served:
        detail += f" ({served - loaded} missing)"
    if spans:
        detail += f"; another source supplied {elsewhere} in {len(spans)} spans, left out of both"
    return CheckResult(loaded == served, loaded, served, detail, pair)


def _served_elsewhere(spans: list[ServedSpan], served: Mapping[str, str]) -> bool:
    """Whether a quote of the API's history is of a span another source served; one whose
    event time the gate would refuse is in none (it counts, as it always did)."""
    moment = event_ms_of(served.get("event_ts"))
    return moment is not None and served_elsewhere_at(spans, moment)


def _bid_not_above_ask(interval: CheckedInterval) -> list[CheckResult]:
    crossed = interval.queries.crossed_quotes(interval.start, interval.end)
    return [CheckResult(crossed == 0, crossed, 0, f"{crossed} crossed rows")]


def _no_duplicates(interval: CheckedInterval) -> list[CheckResult]:
    extra = interval.queries.duplicate_quote_rows(interval.start, interval.end)
    return [CheckResult(extra == 0, extra, 0, f"{extra} duplicate rows")]


def _no_nulls(interval: CheckedInterval) -> list[CheckResult]:
    nulls = interval.queries.quotes_with_nulls(interval.start, interval.end)
    return [CheckResult(nulls == 0, nulls, 0, f"{nulls} rows with nulls")]


def _dead_letter_ratio(interval: CheckedInterval) -> list[CheckResult]:
    dead = interval.queries.dead_letters_received(interval.start, interval.end)
    good = interval.queries.quotes_ingested(interval.start, interval.end)
    ratio = dead / (dead + good) if dead + good else 0.0
    limit = interval.thresholds.max_interval_dead_letter_ratio
    return [CheckResult(ratio <= limit, ratio, limit, f"{dead} dead letters against {good} loaded")]


def _freshness(interval: CheckedInterval) -> list[CheckResult]:
    newest = interval.queries.newest_event_ms()
    age = (now_ms() - newest) / 1000 if newest else float("inf")
    limit = interval.thresholds.freshness_s
    detail = f"newest quote {age:.0f} s old" if newest else "no quotes at all"
    return [CheckResult(age <= limit, age, limit, detail)]


def _cross_rate(interval: CheckedInterval) -> list[CheckResult]:
    return [
        _cross_rate_of(cross, legs, interval.minutes, interval.thresholds.max_cross_rate_ratio)
        for cross, legs in cross_legs(interval.pairs).items()
    ]


def _cross_rate_of(
    cross: str, legs: tuple[str, str], minutes: Sequence[MinuteSummary], limit: float
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
        off += ratio > limit
        if ratio > worst:
            worst = ratio
            worst_detail = (
                f"; worst at {format_ts(minute_ms)[11:16]}: {pairs[cross].bar.close:g} "
                f"against {implied:.6g} implied, {deviation * 1e4:.1f} bp off, "
                f"tolerance {tolerance * 1e4:.1f} bp"
            )
    return CheckResult(
        off == 0,
        worst,
        limit,
        f"{off} of {compared} minutes off {legs[0]} x {legs[1]}{worst_detail}",
        cross,
    )


def _price_jump(interval: CheckedInterval) -> list[CheckResult]:
    limit = interval.thresholds.max_jump_deviations
    return [_price_jump_of(pair, interval.moves.get(pair), limit) for pair in interval.pairs]


def _price_jump_of(pair: str, moves: MidMoves | None, limit: float) -> CheckResult:
    if moves is None:
        return CheckResult(True, 0.0, limit, "fewer than two ticks", pair)
    # A quiet pair's MAD can be 0: one price quantum is then the smallest move it can make.
    quantum = 10.0 ** -PAIR_CATALOG[pair].mid_scale / moves.lowest_mid
    robust = max(MAD_TO_SIGMA * moves.mad, quantum)
    largest = moves.largest_deviation / robust
    return CheckResult(
        largest <= limit,
        largest,
        limit,
        f"largest of {moves.moves} moves {largest:.1f} robust deviations "
        f"({moves.largest_deviation * 1e4:.2f} bp) at {format_ts(moves.largest_at_ms)}",
        pair,
    )


def _stale_pair(interval: CheckedInterval) -> list[CheckResult]:
    ticks = interval.ticks
    newest_of_all = max((pair.newest_event_ms for pair in ticks.values()), default=None)
    results = []
    for pair in interval.pairs:
        newest = ticks[pair].newest_event_ms if pair in ticks else None
        results.append(_stale_of(interval, pair, newest, newest_of_all))
    return results


def _stale_of(
    interval: CheckedInterval, pair: str, newest: int | None, newest_of_all: int | None
) -> CheckResult:
    interval_s = PAIR_CATALOG[pair].tick_interval_ms / 1000
    limit = interval.thresholds.stale_after_intervals * interval_s
    if newest_of_all is None:
        return CheckResult(True, 0.0, limit, "no pair quoted at all", pair)
    behind = (newest_of_all - (newest if newest is not None else to_ms(interval.start))) / 1000
    since = f"newest quote {format_ts(newest)}" if newest is not None else "no quote"
    return CheckResult(
        behind <= limit,
        behind,
        limit,
        f"{since}, {behind:.1f} s behind the newest of all pairs",
        pair,
    )


def _tick_gaps(interval: CheckedInterval) -> list[CheckResult]:
    return [_tick_gaps_of(interval, pair, interval.ticks.get(pair)) for pair in interval.pairs]


def _tick_gaps_of(interval: CheckedInterval, pair: str, ticks: PairTicks | None) -> CheckResult:
    limits = interval.thresholds
    if ticks is None:
        return CheckResult(True, 0, limits.max_missing_ticks, "no ticks (see volume)", pair)
    feed = ""
    if ticks.feed_gaps:
        feed = f", {ticks.feed_gaps} gaps over {limits.max_feed_gap_s:g} s by another source"
    longest = ""
    if ticks.longest_gap_end_ms is not None:
        longest = (
            f"; longest {ticks.longest_gap_ms / 1000:g} s, to {format_ts(ticks.longest_gap_end_ms)}"
        )
    return CheckResult(
        ticks.missing_ticks <= limits.max_missing_ticks and not ticks.feed_gaps,
        ticks.missing_ticks,
        limits.max_missing_ticks,
        f"{ticks.gaps} gaps over {limits.max_gap_intervals:g} intervals of "
        f"{PAIR_CATALOG[pair].tick_interval_ms} ms, {ticks.missing_ticks} ticks missing "
        f"of {ticks.ticks}{feed}{longest}",
        pair,
    )


def _bars(interval: CheckedInterval) -> list[CheckResult]:
    return [_bars_of(interval, pair) for pair in interval.pairs]


def _bars_of(interval: CheckedInterval, pair: str) -> CheckResult:
    """The final pane of each stored bar against the bar recomputed from `quotes`, for the
    whole minutes of the interval. Reported, not failed: a minute without a stored bar (a
    backfill loads quotes only), and a bar of fewer ticks whose prices lie within the
    quotes' (a load drained and relaunched writes a minute in two partial bars; quotes a
    backfill or a replay added later, or that came too late for their bar, are in no
    bar). Failed: a bar that no quotes explain."""
    first = -(-to_ms(interval.start) // MINUTE_MS) * MINUTE_MS
    last = to_ms(interval.end) - MINUTE_MS

    def whole(bar: Bar) -> bool:
        return bar.pair == pair and first <= bar.window_start_ms <= last

    recomputed = {s.bar.window_start_ms: s.bar for s in interval.minutes if whole(s.bar)}
    stored = {bar.window_start_ms: bar for bar in interval.stored_bars if whole(bar)}
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
        not differ,
        len(differ),
        0,
        f"{len(stored)} stored bars, {len(differ)} differ from their quotes, {partial} hold "
        f"part of their quotes, {unbarred} minutes of quotes without a bar{first_differing}",
        pair,
    )


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


QUALITY_CHECKS: tuple[QualityCheck, ...] = (
    QualityCheck(
        "volume",
        "distinct quotes, of every source, against the pair's tick rate",
        "below {min_volume_ratio:g} of the rate",
        _volume,
        ("min_volume_ratio",),
        means_missing_quotes=True,
        per="pair",
    ),
    QualityCheck(
        "reconciliation",
        "the API's quotes in BigQuery against its history, both outside the spans another "
        "source served (a stream has no history to compare with)",
        "counts differ",
        _reconciliation,
        means_missing_quotes=True,
        per="pair",
    ),
    QualityCheck(
        "bid_le_ask", "bid against ask of every row", "any bid above its ask", _bid_not_above_ask
    ),
    QualityCheck("duplicates", "rows against distinct event_ids", "any extra row", _no_duplicates),
    QualityCheck("nulls", "bid, ask, mid, spread, ingest_ts", "any NULL", _no_nulls),
    QualityCheck(
        "dead_letter_ratio",
        "dead letters received against rows written in the interval",
        "above {max_interval_dead_letter_ratio:.0%}",
        _dead_letter_ratio,
        ("max_interval_dead_letter_ratio",),
    ),
    QualityCheck(
        "cross_rate",
        "each minute, a cross's closing mid (EUR-BRL) against its legs' closes multiplied "
        "(EUR-USD x USD-BRL), in log terms",
        "off by more than {max_cross_rate_ratio:g} x the minute's tolerance: the three closing "
        "quotes' relative spreads + each pair's ln(high/low) in the minute + one price quantum "
        "each",
        _cross_rate,
        ("max_cross_rate_ratio",),
        per="triangle",
    ),
    QualityCheck(
        "price_jump",
        "every tick-to-tick move of ln(mid) against the pair's moves in the interval: "
        "\\|move - median\\| / (1.4826 x MAD), MAD floored at one price quantum",
        "above {max_jump_deviations:g} robust deviations",
        _price_jump,
        ("max_jump_deviations",),
        per="pair",
    ),
    QualityCheck(
        "stale_pair",
        "the pair's newest quote against the newest quote of all pairs",
        "more than {stale_after_intervals:g} of its tick intervals behind",
        _stale_pair,
        ("stale_after_intervals",),
        per="pair",
    ),
    QualityCheck(
        "tick_gaps",
        "consecutive event times against the pair's tick interval; observed = missing ticks, "
        "round(gap / interval) - 1 for each gap over {max_gap_intervals:g} intervals between "
        "the API's quotes; a gap with another source's quote at either end (a feed: no tick "
        "schedule) counts no missing tick and is allowed {max_feed_gap_s:g} s",
        "more than {max_missing_ticks:g} ticks missing, or any gap by another source over "
        "{max_feed_gap_s:g} s",
        _tick_gaps,
        ("max_gap_intervals", "max_missing_ticks", "max_feed_gap_s"),
        means_missing_quotes=True,
        per="pair",
    ),
    QualityCheck(
        "bars",
        "the final pane (highest `pane_index`) of each stored `quote_bars_1m` bar against OHLC "
        "of mid + tick_count recomputed from `quotes`, whole minutes only",
        "any bar differs, or a bar has no quotes; minutes without a stored bar (a backfill "
        "writes quotes only) are reported, not failed",
        _bars,
        per="pair",
    ),
    QualityCheck(
        "freshness",
        "newest event time against now",
        "older than {freshness_s:g} s",
        _freshness,
        ("freshness_s",),
        recent_only=True,
    ),
)


# The checks whose failure means quotes are missing from the interval: a backfill's work.
GAP_CHECKS = frozenset(check.name for check in QUALITY_CHECKS if check.means_missing_quotes)


def checks_table() -> str:
    """The checks as a Markdown table, with the built-in thresholds (QUOTESTREAM_QUALITY_THRESHOLDS
    overrides them)."""
    values = asdict(QualityThresholds())
    rows = [
        "| check | what it compares | fails when | thresholds | a failure is a gap to backfill |",
        "| --- | --- | --- | --- | --- |",
    ]
    for check in QUALITY_CHECKS:
        scope = [f"per {check.per}"] if check.per else []
        scope += ["recent hours only"] if check.recent_only else []
        name = f"`{check.name}`" + (f" ({', '.join(scope)})" if scope else "")
        limits = ", ".join(f"`{field}` {values[field]:g}" for field in check.thresholds)
        rows.append(
            f"| {name} | {check.measures.format(**values)} | {check.fails_when.format(**values)} "
            f"| {limits or '-'} | {'yes' if check.means_missing_quotes else 'no'} |"
        )
    return "\n".join(rows)
