"""The BigQuery SQL of the query ports (ports/queries.py), a class a port: every statement the
services run, in one place.

The text runs through the warehouse adapter: `{dataset}` names its dataset, and values travel
as query parameters, never in the text.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
from quotestream.domain.ledger import Bar, LoadedQuote
from quotestream.domain.rows import dead_letter_row_id
from quotestream.domain.schemas import DEAD_LETTER_REPLAYS, QUOTES, QUOTES_DEAD_LETTER
from quotestream.ports.queries import (
    BarPane,
    BarPaneKey,
    KeptDeadLetter,
    MidMoves,
    MinuteSummary,
    PairTicks,
    Progress,
    RecentFlow,
    ReplayVerdict,
    ServedSpan,
    StoredBar,
    TickGapRule,
)

log = logging.getLogger(__name__)

# The SQL twin of domain.rows.dead_letter_row_id, for the rows that have a message id (every
# pulled message has; the Python one digests the content of a row without).
DEAD_LETTER_ROW_ID_SQL = "CONCAT(stage, ':', message_id)"
# pair -> newest event time of the quotes of @source from @since on: where the extract
# resumes (the page's freshness, bigquery_views.py, counts every source).
NEWEST_EXTRACTED_PER_PAIR = (
    "SELECT pair, UNIX_MILLIS(MAX(event_ts)) AS newest FROM {dataset}.quotes "
    "WHERE event_ts >= TIMESTAMP_MILLIS(@since) AND source = @source GROUP BY pair"
)
# Ids per lookup: BigQuery caps the parameters of one query.
_LOOKUP_CHUNK = 500
# A lookup of stored rows takes its ids as one parameter, joined by a separator none holds (an
# event id is a hex digest, a dead-letter row id a stage and Pub/Sub's numeric message id):
# BigQuery caps the parameters of a query at 10,000, not their size, and the local emulator
# takes about a millisecond a parameter. So one lookup answers a whole batch of the load's
# writer (under 6,000 quote rows), whatever its event times.
_IDS_PER_LOOKUP = 10_000
_ID_SEPARATOR = ","
# Days a lookup of quotes reads, two parameters each (the bounds of its times that day).
_DAYS_PER_LOOKUP = 1_000
# The quotes of [@start, @end), each event id once (its first written row), mid as FLOAT64:
# a duplicate row is the duplicates check's finding, and must not skew the others.
_DISTINCT_TICKS = (
    "SELECT pair, event_id, event_ts, source, CAST(mid AS FLOAT64) AS mid, "
    "CAST(spread AS FLOAT64) AS spread FROM {dataset}.quotes "
    "WHERE event_ts >= @start AND event_ts < @end "
    "QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingest_ts, bid, ask) = 1"
)
# Each pair's ticks in time order, as the window over them.
_IN_TIME = "PARTITION BY pair ORDER BY event_ts, event_id"


class _BigQueryQueries:
    """What every query class shares: the warehouse adapter's client, closed with it."""

    def __init__(self, warehouse: BigQueryWarehouse) -> None:
        self._warehouse = warehouse

    def close(self) -> None:
        self._warehouse.close()


class _BigQueryServedElsewhere(_BigQueryQueries):
    """The question QualityQueries and BackfillWrites share: the spans another source served."""

    def served_elsewhere(
        self, start: datetime, end: datetime, source: str
    ) -> dict[str, list[ServedSpan]]:
        # Each quote of another source between the same two of @source's (or an edge) is of one
        # run: the previous and the next of @source's times name its span.
        rows = self._warehouse.query(
            f"WITH ticks AS ({_DISTINCT_TICKS}), "  # noqa: S608
            "around AS (SELECT pair, source, "
            "  MAX(IF(source = @source, event_ts, NULL)) OVER ("
            f"    {_IN_TIME} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS after_ts, "
            "  MIN(IF(source = @source, event_ts, NULL)) OVER ("
            f"    {_IN_TIME} ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS before_ts "
            "  FROM ticks) "
            "SELECT pair, UNIX_MILLIS(after_ts) AS after_ms, UNIX_MILLIS(before_ts) AS before_ms, "
            "COUNT(*) AS quotes FROM around WHERE source != @source "
            "GROUP BY pair, after_ms, before_ms",
            {"start": start, "end": end, "source": source},
        )
        spans: dict[str, list[ServedSpan]] = {}
        # NULLs first: a span open at the interval's start comes before any other.
        for row in sorted(rows, key=lambda row: (row["pair"], row["after_ms"] or 0)):
            spans.setdefault(row["pair"], []).append(
                ServedSpan(row["after_ms"], row["before_ms"], int(row["quotes"]))
            )
        return spans


class BigQueryQualityQueries(_BigQueryServedElsewhere):
    """QualityQueries; as BarQueries, the stored bars of the Quotes pipeline page."""

    def distinct_quotes_per_pair(self, start: datetime, end: datetime) -> dict[str, int]:
        rows = self._warehouse.query(
            "SELECT pair, COUNT(DISTINCT event_id) AS n FROM {dataset}.quotes "
            "WHERE event_ts >= @start AND event_ts < @end GROUP BY pair",
            {"start": start, "end": end},
        )
        return {row["pair"]: int(row["n"]) for row in rows}

    def crossed_quotes(self, start: datetime, end: datetime) -> int:
        return self._count_between(start, end, "COUNTIF(bid > ask)")

    def duplicate_quote_rows(self, start: datetime, end: datetime) -> int:
        return self._count_between(start, end, "COUNT(*) - COUNT(DISTINCT event_id)")

    def quotes_with_nulls(self, start: datetime, end: datetime) -> int:
        return self._count_between(
            start,
            end,
            "COUNTIF(bid IS NULL OR ask IS NULL OR mid IS NULL OR spread IS NULL "
            "OR ingest_ts IS NULL)",
        )

    def quotes_ingested(self, start: datetime, end: datetime) -> int:
        return self._count_between(start, end, "COUNT(*)", time_column="ingest_ts")

    def dead_letters_received(self, start: datetime, end: datetime) -> int:
        return self._count_between(
            start, end, "COUNT(*)", QUOTES_DEAD_LETTER.name, time_column="received_ts"
        )

    def newest_event_ms(self) -> int | None:
        rows = self._warehouse.query(
            "SELECT UNIX_MILLIS(MAX(event_ts)) AS newest FROM {dataset}.quotes"
        )
        return rows[0]["newest"] if rows else None

    def minute_summaries(self, start: datetime, end: datetime) -> list[MinuteSummary]:
        rows = self._warehouse.query(
            # The shared CTE is ours; the times travel as query parameters.
            f"WITH ticks AS ({_DISTINCT_TICKS}) "  # noqa: S608
            "SELECT pair, UNIX_MILLIS(TIMESTAMP_TRUNC(event_ts, MINUTE)) AS start_ms, "
            "ARRAY_AGG(mid ORDER BY event_ts, event_id LIMIT 1)[OFFSET(0)] AS o, "
            "MAX(mid) AS h, MIN(mid) AS l, "
            "ARRAY_AGG(mid ORDER BY event_ts DESC, event_id DESC LIMIT 1)[OFFSET(0)] AS c, "
            "ARRAY_AGG(spread ORDER BY event_ts DESC, event_id DESC LIMIT 1)[OFFSET(0)] "
            "AS close_spread, COUNT(*) AS tick_count FROM ticks GROUP BY pair, start_ms",
            {"start": start, "end": end},
        )
        return [MinuteSummary(_bar(row), row["close_spread"]) for row in rows]

    def final_bars(self, start: datetime, end: datetime) -> list[Bar]:
        rows = self._warehouse.query(
            "SELECT pair, UNIX_MILLIS(window_start) AS start_ms, CAST(open AS FLOAT64) AS o, "
            "CAST(high AS FLOAT64) AS h, CAST(low AS FLOAT64) AS l, CAST(close AS FLOAT64) AS c, "
            "tick_count FROM {dataset}.quote_bars_1m "
            "WHERE window_start >= @start AND window_start < @end "
            # A relaunched load opens a minute its predecessor wrote again, as pane 0: of equal
            # panes the one with more ticks is the fuller bar.
            "QUALIFY ROW_NUMBER() OVER (PARTITION BY pair, window_start "
            "  ORDER BY COALESCE(pane_index, 0) DESC, tick_count DESC) = 1",
            {"start": start, "end": end},
        )
        return [_bar(row) for row in rows]

    def mid_moves(self, start: datetime, end: datetime) -> list[MidMoves]:
        # PERCENTILE_CONT is analytic only in BigQuery: each median is a window over the pair.
        rows = self._warehouse.query(
            f"WITH ticks AS ({_DISTINCT_TICKS}), "  # noqa: S608
            "moves AS (SELECT pair, event_ts, MIN(mid) OVER (PARTITION BY pair) AS lowest_mid, "
            "  LN(mid / LAG(mid) OVER (PARTITION BY pair ORDER BY event_ts, event_id)) AS move "
            "  FROM ticks), "
            "centred AS (SELECT pair, event_ts, lowest_mid, move, "
            "  PERCENTILE_CONT(move, 0.5) OVER (PARTITION BY pair) AS median "
            "  FROM moves WHERE move IS NOT NULL), "
            "deviations AS (SELECT pair, event_ts, lowest_mid, median, "
            "  ABS(move - median) AS deviation, "
            "  PERCENTILE_CONT(ABS(move - median), 0.5) OVER (PARTITION BY pair) AS mad "
            "  FROM centred) "
            "SELECT pair, COUNT(*) AS moves, MAX(median) AS median, MAX(mad) AS mad, "
            "MAX(deviation) AS largest, "
            "UNIX_MILLIS(ARRAY_AGG(event_ts ORDER BY deviation DESC LIMIT 1)[OFFSET(0)]) "
            "AS largest_at, MAX(lowest_mid) AS lowest_mid FROM deviations GROUP BY pair",
            {"start": start, "end": end},
        )
        return [
            MidMoves(
                row["pair"],
                row["moves"],
                row["median"],
                row["mad"],
                row["largest"],
                row["largest_at"],
                row["lowest_mid"],
            )
            for row in rows
        ]

    def pair_ticks(self, start: datetime, end: datetime, gaps: TickGapRule) -> dict[str, PairTicks]:
        params: dict[str, Any] = {
            "start": start,
            "end": end,
            "allowed": gaps.max_intervals,
            "source": gaps.source,
            "feed_allowed_ms": gaps.max_feed_gap_ms,
        }
        interval = "NULL"
        if gaps.tick_intervals_ms:
            whens = []
            for index, (pair, interval_ms) in enumerate(gaps.tick_intervals_ms.items()):
                params.update({f"pair_{index}": pair, f"interval_{index}": interval_ms})
                whens.append(f"WHEN @pair_{index} THEN @interval_{index}")
            interval = f"CASE pair {' '.join(whens)} END"
        too_long = "NOT feed AND gap_ms > @allowed * interval_ms"
        rows = self._warehouse.query(
            # The CASE names only parameters; the values travel as such.
            f"WITH ticks AS ({_DISTINCT_TICKS}), "  # noqa: S608
            f"gaps AS (SELECT pair, event_ts, {interval} AS interval_ms, "
            # A gap is the feed's when another source's tick is at either end of it.
            f"  source != @source OR COALESCE(LAG(source) OVER ({_IN_TIME}), @source) != @source "
            "  AS feed, "
            f"  UNIX_MILLIS(event_ts) - UNIX_MILLIS(LAG(event_ts) OVER ({_IN_TIME})) AS gap_ms "
            "  FROM ticks) "
            "SELECT pair, COUNT(*) AS ticks, UNIX_MILLIS(MAX(event_ts)) AS newest, "
            f"COUNTIF({too_long}) AS gaps, "
            f"SUM(IF({too_long}, CAST(ROUND(gap_ms / interval_ms) AS INT64) - 1, 0)) AS missing, "
            "COUNTIF(feed AND gap_ms > @feed_allowed_ms) AS feed_gaps, MAX(gap_ms) AS longest, "
            # No NULL element: BigQuery refuses arrays holding one.
            "UNIX_MILLIS(ARRAY_AGG(event_ts ORDER BY IFNULL(gap_ms, -1) DESC LIMIT 1)[OFFSET(0)]) "
            "AS longest_end "
            "FROM gaps GROUP BY pair",
            params,
        )
        return {
            row["pair"]: PairTicks(
                row["pair"],
                row["ticks"],
                row["newest"],
                int(row["gaps"] or 0),
                int(row["missing"] or 0),
                int(row["longest"] or 0),
                # A single tick has no gap: its own time is no gap's end.
                row["longest_end"] if row["longest"] is not None else None,
                int(row["feed_gaps"] or 0),
            )
            for row in rows
        }

    def _count_between(
        self,
        start: datetime,
        end: datetime,
        count: str,
        table: str = QUOTES.name,
        time_column: str = "event_ts",
    ) -> int:
        """`count`, an aggregate, over the rows of `table` with `time_column` in [start, end)."""
        rows = self._warehouse.query(
            # The aggregate, table and column are ours; the times travel as query parameters.
            f"SELECT {count} AS n FROM {{dataset}}.{table} "  # noqa: S608
            f"WHERE {time_column} >= @start AND {time_column} < @end",
            {"start": start, "end": end},
        )
        return int(rows[0]["n"] or 0)


class BigQueryAccountingQueries(_BigQueryQueries):
    def progress_since(self, since_ms: int) -> Progress:
        loaded = self._warehouse.query(
            "SELECT COUNT(*) AS n, UNIX_MILLIS(MAX(event_ts)) AS newest FROM {dataset}.quotes "
            "WHERE UNIX_MILLIS(ingest_ts) >= @since",
            {"since": since_ms},
        )[0]
        dead = self._warehouse.query(
            "SELECT COUNT(*) AS n FROM {dataset}.quotes_dead_letter "
            "WHERE UNIX_MILLIS(received_ts) >= @since",
            {"since": since_ms},
        )[0]
        return Progress(int(loaded["n"]), int(dead["n"]), loaded["newest"])

    def loaded_quotes_since(self, since_ms: int) -> list[LoadedQuote]:
        rows = self._warehouse.query(
            "SELECT event_id, pair, UNIX_MILLIS(event_ts) AS event_ms, "
            "UNIX_MILLIS(ingest_ts) AS ingest_ms FROM {dataset}.quotes "
            "WHERE UNIX_MILLIS(ingest_ts) >= @since",
            {"since": since_ms},
        )
        return [
            LoadedQuote(row["event_id"], row["pair"], row["event_ms"], row["ingest_ms"])
            for row in rows
        ]

    def bar_panes_since(self, since_ms: int) -> list[BarPane]:
        rows = self._warehouse.query(
            "SELECT pair, UNIX_MILLIS(window_start) AS start_ms, CAST(open AS FLOAT64) AS o, "
            "CAST(high AS FLOAT64) AS h, CAST(low AS FLOAT64) AS l, CAST(close AS FLOAT64) AS c, "
            "tick_count, COALESCE(pane_index, 0) AS pane_index FROM {dataset}.quote_bars_1m "
            "WHERE UNIX_MILLIS(window_end) >= @since",
            {"since": since_ms},
        )
        return [BarPane(_bar(row), row["pane_index"]) for row in rows]

    def dead_letter_reasons_since(self, since_ms: int) -> dict[str, str]:
        rows = self._warehouse.query(
            "SELECT message_id, reason FROM {dataset}.quotes_dead_letter "
            "WHERE UNIX_MILLIS(received_ts) >= @since AND message_id IS NOT NULL",
            {"since": since_ms},
        )
        return {row["message_id"]: row["reason"] for row in rows}


class BigQueryReplayQueries(_BigQueryQueries):
    def dead_letters_between(
        self, start: datetime, end: datetime, reasons: Collection[str]
    ) -> list[KeptDeadLetter]:
        params: dict[str, Any] = {"start": start, "end": end}
        params.update({f"reason_{index}": reason for index, reason in enumerate(sorted(reasons))})
        only = ""
        if reasons:
            only = f" AND reason IN ({', '.join(f'@reason_{i}' for i in range(len(reasons)))})"
        rows = self._warehouse.query(
            # The filter names only parameters; the values travel as such.
            "SELECT payload, payload_encoding, message_id, reason, stage, "  # noqa: S608
            "ARRAY(SELECT AS STRUCT a.key AS key, a.value AS value FROM UNNEST(attributes) AS a) "
            "AS attributes FROM {dataset}.quotes_dead_letter "
            f"WHERE received_ts >= @start AND received_ts < @end{only}",
            params,
        )
        return [
            KeptDeadLetter(
                dead_letter_row_id(row),
                row["payload"],
                row["payload_encoding"],
                {item["key"]: item["value"] for item in row["attributes"] or []},
                row["reason"],
                row["stage"],
            )
            for row in rows
        ]

    def replay_verdicts(self, dead_letter_ids: Collection[str]) -> dict[str, ReplayVerdict]:
        ids = sorted(set(dead_letter_ids))
        verdicts: dict[str, ReplayVerdict] = {}
        for first in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[first : first + _LOOKUP_CHUNK]
            params = {f"id_{index}": row_id for index, row_id in enumerate(chunk)}
            names = ", ".join(f"@{name}" for name in params)
            rows = self._warehouse.query(
                # The table is ours; the ids travel as query parameters.
                "SELECT dead_letter_id, outcome, reason "  # noqa: S608
                f"FROM {{dataset}}.{DEAD_LETTER_REPLAYS.name} WHERE dead_letter_id IN ({names}) "
                "QUALIFY ROW_NUMBER() OVER ("
                "  PARTITION BY dead_letter_id ORDER BY replayed_ts DESC, outcome) = 1",
                params,
            )
            verdicts.update(
                {
                    row["dead_letter_id"]: ReplayVerdict(row["outcome"], row["reason"])
                    for row in rows
                }
            )
        return verdicts


class BigQueryHealthQueries(_BigQueryQueries):
    def recent_flow(self, since_ms: int, events_since_ms: int) -> RecentFlow:
        row = self._warehouse.query(
            "SELECT (SELECT UNIX_MILLIS(MAX(event_ts)) FROM {dataset}.quotes "
            "WHERE event_ts >= TIMESTAMP_MILLIS(@events_since)) AS newest, "
            "(SELECT COUNT(*) FROM {dataset}.quotes "
            "WHERE event_ts >= TIMESTAMP_MILLIS(@events_since) "
            "AND UNIX_MILLIS(ingest_ts) >= @since) AS loaded, "
            "(SELECT COUNT(*) FROM {dataset}.quotes_dead_letter "
            "WHERE received_ts >= TIMESTAMP_MILLIS(@since)) AS dead",
            {"since": since_ms, "events_since": events_since_ms},
        )[0]
        return RecentFlow(row["newest"], int(row["loaded"] or 0), int(row["dead"] or 0))


class BigQueryStoredRowLookups(_BigQueryQueries):
    # One pair's minutes of [@start, @end) as stored, in one round trip: their quotes (each
    # event id once, its first written row) and each minute's final pane (highest pane_index,
    # then most ticks), the rows with a pane_index. Both parts read only the span's partitions
    # and the pair's cluster.
    _STORED_BARS = (
        "(SELECT UNIX_MILLIS(TIMESTAMP_TRUNC(event_ts, MINUTE)) AS start_ms, event_id, "
        "UNIX_MILLIS(event_ts) AS event_ms, mid, "
        "CAST(NULL AS INT64) AS pane_index, CAST(NULL AS INT64) AS tick_count "
        "FROM {dataset}.quotes WHERE pair = @pair "
        "AND event_ts >= TIMESTAMP_MILLIS(@start) AND event_ts < TIMESTAMP_MILLIS(@end) "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ingest_ts, bid, ask) = 1) "
        "UNION ALL (SELECT UNIX_MILLIS(window_start), CAST(NULL AS STRING), "
        "CAST(NULL AS INT64), CAST(NULL AS NUMERIC), COALESCE(pane_index, 0), tick_count "
        "FROM {dataset}.quote_bars_1m WHERE pair = @pair "
        "AND window_start >= TIMESTAMP_MILLIS(@start) AND window_start < TIMESTAMP_MILLIS(@end) "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY window_start "
        "ORDER BY COALESCE(pane_index, 0) DESC, tick_count DESC) = 1)"
    )

    def stored_quote_ids(self, event_times: Mapping[str, datetime]) -> set[str]:
        found: set[str] = set()
        for ids, days in _quote_lookups(event_times):
            params: dict[str, Any] = {}
            within = []
            for index, (earliest, latest) in enumerate(days):
                params.update({f"earliest_{index}": earliest, f"latest_{index}": latest})
                within.append(f"event_ts BETWEEN @earliest_{index} AND @latest_{index}")
            found |= self._stored_ids(
                QUOTES.name, "event_id", ids, f"({' OR '.join(within)})", params
            )
        return found

    def stored_dead_letter_ids(self, row_ids: Collection[str]) -> set[str]:
        ids = sorted(set(row_ids))
        found: set[str] = set()
        for first in range(0, len(ids), _IDS_PER_LOOKUP):
            chunk = ids[first : first + _IDS_PER_LOOKUP]
            found |= self._stored_ids(QUOTES_DEAD_LETTER.name, DEAD_LETTER_ROW_ID_SQL, chunk)
        return found

    def stored_bar_panes(self, panes: Collection[BarPaneKey]) -> set[BarPaneKey]:
        if not panes:
            return set()
        starts = [start for _, start, _ in panes]
        rows = self._warehouse.query(
            "SELECT pair, UNIX_MILLIS(window_start) AS start_ms, pane_index "
            "FROM {dataset}.quote_bars_1m WHERE window_start BETWEEN @earliest AND @latest "
            "AND pair IN UNNEST(SPLIT(@pairs, ','))",
            {
                "earliest": datetime.fromtimestamp(min(starts) / 1000, tz=UTC),
                "latest": datetime.fromtimestamp(max(starts) / 1000, tz=UTC),
                "pairs": ",".join(sorted({pair for pair, _, _ in panes})),
            },
        )
        stored = {
            (row["pair"], int(row["start_ms"]), int(row["pane_index"]))
            for row in rows
            if row["pane_index"] is not None
        }
        return stored & set(panes)

    def stored_bars(self, pair: str, start_ms: int, end_ms: int) -> dict[int, StoredBar]:
        rows = self._warehouse.query(
            self._STORED_BARS, {"pair": pair, "start": start_ms, "end": end_ms}
        )
        ticks: dict[int, dict[str, tuple[int, Decimal]]] = {}
        panes: dict[int, tuple[int, int]] = {}
        for row in rows:
            minute = int(row["start_ms"])
            if row["event_id"] is None:
                panes[minute] = (int(row["pane_index"]), int(row["tick_count"]))
            else:
                minute_ticks = ticks.setdefault(minute, {})
                minute_ticks[row["event_id"]] = (int(row["event_ms"]), Decimal(str(row["mid"])))
        return {
            minute: StoredBar(ticks.get(minute, {}), *panes.get(minute, (-1, 0)))
            for minute in sorted(ticks.keys() | panes.keys())
        }

    def _stored_ids(
        self,
        table: str,
        id_sql: str,
        ids: Sequence[str],
        condition: str = "TRUE",
        params: Mapping[str, Any] | None = None,
    ) -> set[str]:
        """Those of `ids` (`id_sql` of a row) that `table` holds where `condition` is true."""
        rows = self._warehouse.query(
            # Table, expression and condition are ours; the values travel as query parameters.
            f"SELECT DISTINCT {id_sql} AS row_id FROM {{dataset}}.{table} "  # noqa: S608
            f"WHERE {id_sql} IN UNNEST(SPLIT(@ids, '{_ID_SEPARATOR}')) AND {condition}",
            {"ids": _ID_SEPARATOR.join(ids), **(params or {})},
        )
        return {str(row["row_id"]) for row in rows}


class BigQueryResumePoints(_BigQueryQueries):
    """ResumePoints: one query per job start, reading only the look-back's partitions. No
    dataset or table (nothing provisioned, an extract publishing where no load stores) holds
    no quote: nothing to resume from."""

    def newest_event_per_pair(self, since_ms: int, source: str) -> dict[str, int]:
        from google.api_core.exceptions import NotFound

        try:
            rows = self._warehouse.query(
                NEWEST_EXTRACTED_PER_PAIR, {"since": since_ms, "source": source}
            )
        except NotFound as error:
            log.warning("no quotes to resume from: %s", str(error).splitlines()[0][:200])
            return {}
        return {row["pair"]: int(row["newest"]) for row in rows}


class BigQueryBackfillWrites(_BigQueryServedElsewhere):
    def insert_missing_quotes(self, scratch_table: str, start: datetime, end: datetime) -> int:
        columns = ", ".join(QUOTES.column_names)
        return self._warehouse.execute(
            # Identifiers are ours (the scratch table's too); the values travel as parameters.
            f"INSERT INTO {{dataset}}.{QUOTES.name} ({columns}) "  # noqa: S608
            f"SELECT {columns} FROM {{dataset}}.{scratch_table} AS s "
            "WHERE s.event_ts >= @start AND s.event_ts < @end AND NOT EXISTS ("
            f"  SELECT 1 FROM {{dataset}}.{QUOTES.name} AS q "
            "  WHERE q.event_id = s.event_id AND q.event_ts >= @start AND q.event_ts < @end)",
            {"start": start, "end": end},
        )


def _quote_lookups(
    event_times: Mapping[str, datetime],
) -> Iterator[tuple[list[str], list[tuple[datetime, datetime]]]]:
    """The event ids in time order, a lookup's worth at a time, each lookup with the earliest
    and the latest of its times on each UTC day: bounds on the partitioning column, so that
    BigQuery reads only the day partitions the times fall on, however far apart they are."""
    ids: list[str] = []
    days: dict[date, tuple[datetime, datetime]] = {}
    for event_id in sorted(event_times, key=lambda event_id: (event_times[event_id], event_id)):
        moment = event_times[event_id]
        day = moment.astimezone(UTC).date()
        if len(ids) == _IDS_PER_LOOKUP or (day not in days and len(days) == _DAYS_PER_LOOKUP):
            yield ids, list(days.values())
            ids, days = [], {}
        ids.append(event_id)
        days[day] = (days.get(day, (moment, moment))[0], moment)
    if ids:
        yield ids, list(days.values())


def _bar(row: Mapping[str, Any]) -> Bar:
    """A bar from a row of pair, start_ms, o, h, l, c and tick_count."""
    return Bar(
        row["pair"], row["start_ms"], row["o"], row["h"], row["l"], row["c"], row["tick_count"]
    )
