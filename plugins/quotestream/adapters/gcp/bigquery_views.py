"""The BigQuery SQL of the operator page's read model (ports/views.py).

Every statement bounds the partitions it reads by `@since` (event_ts is the partition column
of `quotes`, received_ts of the dead letters); values travel as query parameters.
"""

from __future__ import annotations

from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
from quotestream.ports.views import (
    DeadLetterGroup,
    Lag,
    MinuteCount,
    PairLatest,
    QualityResult,
)

# A quote written in the window may have been stamped up to a day before it was written
# (a backlog drained late); older event times are not worth a day more of partitions.
_EVENT_SLACK_MS = 86_400_000
SAMPLE_CHARS = 500
# Per pair, from @since on: the newest event time whatever its source (the extract's resume
# point asks it of its own source: bigquery_queries.py), the source of that newest quote, the
# first quote of that source's current run, and the switches of source from @switches_since
# on. One scan: each quote is compared with its predecessor, ties broken alike everywhere.
LATEST_PER_PAIR = (
    "SELECT pair, UNIX_MILLIS(MAX(event_ts)) AS newest, "
    "ARRAY_AGG(source ORDER BY event_ts DESC, source DESC LIMIT 1)[OFFSET(0)] AS source, "
    "UNIX_MILLIS(MAX(IF(previous IS NULL OR source != previous, event_ts, NULL))) AS since, "
    "COUNTIF(source != previous AND event_ts >= TIMESTAMP_MILLIS(@switches_since)) AS switches "
    "FROM ("
    "  SELECT pair, event_ts, source, "
    "  LAG(source) OVER (PARTITION BY pair ORDER BY event_ts, source) AS previous "
    "  FROM {dataset}.quotes WHERE event_ts >= TIMESTAMP_MILLIS(@since)"
    ") GROUP BY pair"
)


class BigQueryPipelineViews:
    def __init__(self, warehouse: BigQueryWarehouse) -> None:
        self._warehouse = warehouse

    def rows_per_minute(self, since_ms: int) -> list[MinuteCount]:
        rows = self._warehouse.query(
            "SELECT UNIX_MILLIS(TIMESTAMP_TRUNC(ingest_ts, MINUTE)) AS minute_ms, "
            "COUNT(*) AS n FROM {dataset}.quotes "
            "WHERE event_ts >= TIMESTAMP_MILLIS(@events_since) "
            "AND ingest_ts >= TIMESTAMP_MILLIS(@since) GROUP BY minute_ms ORDER BY minute_ms",
            {"since": since_ms, "events_since": since_ms - _EVENT_SLACK_MS},
        )
        return [MinuteCount(int(row["minute_ms"]), int(row["n"])) for row in rows]

    def lag(self, since_ms: int) -> Lag:
        row = self._warehouse.query(
            "SELECT APPROX_QUANTILES(lag_ms, 100)[OFFSET(50)] AS p50, "
            "APPROX_QUANTILES(lag_ms, 100)[OFFSET(95)] AS p95, COUNT(*) AS n FROM ("
            "  SELECT UNIX_MILLIS(ingest_ts) - UNIX_MILLIS(event_ts) AS lag_ms "
            "  FROM {dataset}.quotes WHERE event_ts >= TIMESTAMP_MILLIS(@events_since) "
            "  AND ingest_ts >= TIMESTAMP_MILLIS(@since))",
            {"since": since_ms, "events_since": since_ms - _EVENT_SLACK_MS},
        )[0]
        if not row["n"]:
            return Lag(None, None, 0)
        return Lag(row["p50"] / 1000, row["p95"] / 1000, int(row["n"]))

    def latest_per_pair(self, since_ms: int, switches_since_ms: int) -> dict[str, PairLatest]:
        rows = self._warehouse.query(
            LATEST_PER_PAIR, {"since": since_ms, "switches_since": switches_since_ms}
        )
        return {
            row["pair"]: PairLatest(
                int(row["newest"]), row["source"], int(row["since"]), int(row["switches"])
            )
            for row in rows
        }

    def dead_letters_by_reason(self, since_ms: int) -> list[DeadLetterGroup]:
        rows = self._warehouse.query(
            "SELECT reason, stage, COUNT(*) AS n, UNIX_MILLIS(MAX(received_ts)) AS newest, "
            # BigQuery refuses NULL array elements: a payload-less dead letter samples as ''.
            "ARRAY_AGG(SUBSTR(COALESCE(payload, ''), 1, @chars) "
            "ORDER BY received_ts DESC LIMIT 1)[OFFSET(0)] AS sample "
            "FROM {dataset}.quotes_dead_letter WHERE received_ts >= TIMESTAMP_MILLIS(@since) "
            "GROUP BY reason, stage ORDER BY n DESC, reason, stage",
            {"since": since_ms, "chars": SAMPLE_CHARS},
        )
        return [
            DeadLetterGroup(
                row["reason"], row["stage"], int(row["n"]), int(row["newest"]), row["sample"]
            )
            for row in rows
        ]

    def quality_results(self, since_ms: int) -> list[QualityResult]:
        rows = self._warehouse.query(
            "SELECT check_name, pair, UNIX_MILLIS(interval_start) AS start_ms, "
            "UNIX_MILLIS(interval_end) AS end_ms, passed, details, run_id, "
            "UNIX_MILLIS(checked_ts) AS checked_ms FROM {dataset}.dq_results "
            "WHERE interval_start >= TIMESTAMP_MILLIS(@since) "
            "QUALIFY ROW_NUMBER() OVER ("
            "  PARTITION BY check_name, pair, interval_start ORDER BY checked_ts DESC) = 1 "
            "ORDER BY start_ms DESC, check_name, pair",
            {"since": since_ms},
        )
        return [
            QualityResult(
                row["check_name"],
                row["pair"],
                int(row["start_ms"]),
                int(row["end_ms"]),
                bool(row["passed"]),
                row["details"] or "",
                row["run_id"] or "",
                int(row["checked_ms"]),
            )
            for row in rows
        ]

    def close(self) -> None:
        self._warehouse.close()
