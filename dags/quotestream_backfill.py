"""Load each hour's quotes from the API's history, inserting only what `quotes` lacks."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from quotestream.entrypoints.dags import (
    alert_on_missed_deadline,
    default_args,
    run_deadline,
    table_asset_uri,
)


@dag(
    dag_id="quotestream_backfill",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    # Runs are made on purpose, for gaps (`airflow backfill create`); unpause to backfill
    # every closed hour as a safety net.
    is_paused_upon_creation=True,
    # A run still unfinished after this is stopped and alerts (QUOTESTREAM_BACKFILL_DEADLINE_S).
    dagrun_timeout=run_deadline("backfill_deadline_s"),
    on_failure_callback=alert_on_missed_deadline,
    default_args=default_args(),
    tags=["quotestream", "backfill"],
    doc_md="""
One run per hour of data, paused on creation: fill a gap with
`airflow backfill create --dag-id quotestream_backfill --from-date ... --to-date ...`.
An hour is backfilled only once it is at least an hour old, so the streaming load has
delivered what it will (a backfill racing it would insert rows the stream then repeats).
The interval's history goes through the gate into a scratch table (a load job), then one
INSERT adds only the event_ids `quotes` lacks: safe beside the streaming buffer, and running
an interval twice changes nothing. A run still unfinished 2 hours after it started
(`QUOTESTREAM_BACKFILL_DEADLINE_S`) is stopped by the scheduler and alerts.
""",
)
def quotestream_backfill() -> None:
    @task(outlets=[Asset(table_asset_uri("quotes"))])
    def backfill(data_interval_start=None, data_interval_end=None, run_id=None) -> str:
        from quotestream import bootstrap
        from quotestream.entrypoints.dags import data_interval, reschedule_at
        from quotestream.settings import Settings

        start, end = data_interval(data_interval_start, data_interval_end)
        settled = end + timedelta(hours=1)
        if pendulum.now("UTC") < settled:
            # Come back when the stream has delivered the hour; the slot is free meanwhile.
            reschedule_at(settled)
        service = bootstrap.build_backfill_service(Settings())
        return str(service.run(start, end, run_id))

    backfill()


quotestream_backfill()
