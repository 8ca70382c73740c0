"""Re-drive dead letters through the gate after a fix: what now parses joins `quotes`."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from quotestream.entrypoints.dags import default_args, table_asset_uri


@dag(
    dag_id="quotestream_replay_dead_letters",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(retries=1),
    params={
        "start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="received from (ISO 8601); empty: 24 hours before the end",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="received before (ISO 8601); empty: now",
        ),
        "reasons": Param(
            [], type="array", items={"type": "string"}, description="e.g. bad_precision; empty: all"
        ),
        "dry_run": Param(True, type="boolean", description="count only, write nothing"),
    },
    tags=["quotestream", "dead-letters"],
    # Who may run it: Op (and Admin). Read by the FAB auth manager (Composer's), which grants
    # these per-DAG permissions to the role; it takes nothing from roles with global DAG
    # permissions (FAB's User), and other auth managers ignore it.
    access_control={
        "Op": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}
    },
    doc_md="""
Manual. Once a fix to the gate (or to the pair catalog) is deployed, re-drives the dead letters
received in [start, end) of the chosen reasons through the same `parse_quote` the load uses.
What now parses is inserted into `quotes` only where its event_id is missing (insert ids =
event_id), and a row of `dead_letter_replays` marks the dead letter replayed; what still fails
gets a row with the gate's reason now. Dead letters are never deleted. A second run changes
nothing. Dry run by default: trigger once to read the counts, then again with `dry_run` false.
A range longer than `QUOTESTREAM_REPLAY_MAX_RANGE_H` hours is replayed in chunks of that size,
one after another, so a run never holds more than one chunk's dead letters.
""",
)
def quotestream_replay_dead_letters() -> None:
    @task(
        inlets=[Asset(table_asset_uri("quotes_dead_letter"))],
        outlets=[
            Asset(table_asset_uri("quotes")),
            Asset(table_asset_uri("dead_letter_replays")),
        ],
    )
    def replay(params=None, run_id=None) -> str:
        import logging
        from dataclasses import fields, replace
        from datetime import UTC, datetime, timedelta

        from quotestream import bootstrap
        from quotestream.settings import Settings

        def moment(text: str) -> datetime:
            # A time without a zone is read as UTC, the zone of every time here.
            parsed = datetime.fromisoformat(text)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

        end = moment(params["end"]) if params["end"] else datetime.now(UTC)
        start = moment(params["start"]) if params["start"] else end - timedelta(hours=24)
        if end <= start:
            raise ValueError(f"end {end} is not after start {start}")
        settings = Settings()
        service = bootstrap.build_replay_service(settings)
        # A run reads, and holds, one chunk of dead letters at a time. Each chunk is a replay of
        # its own, so a retry after a failed chunk redoes the earlier ones without effect.
        chunk = timedelta(hours=settings.replay_max_range_h)
        log = logging.getLogger(__name__)
        totals = []
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + chunk, end)
            counts = service.run(
                chunk_start, chunk_end, params["reasons"], run_id, dry_run=params["dry_run"]
            )
            log.info("replay of %s to %s: %s", chunk_start, chunk_end, counts)
            totals.append(counts)
            chunk_start = chunk_end
        # The chunks' counts added up, field by field (dry_run is the same for all).
        total = replace(
            totals[0],
            **{
                field.name: sum(getattr(part, field.name) for part in totals)
                for field in fields(totals[0])
                if field.name != "dry_run"
            },
        )
        log.info("replay of %s to %s: %s", start, end, total)
        return str(total)

    replay()


quotestream_replay_dead_letters()
