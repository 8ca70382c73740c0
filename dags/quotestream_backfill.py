"""Load each hour's quotes from the API's history, inserting only what `quotes` lacks."""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from quotestream.orchestration import default_args


@dag(
    dag_id="quotestream_backfill",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args=default_args(),
    tags=["quotestream", "backfill"],
    doc_md="""
One run per hour of data. Fill a gap with
`airflow backfill create --dag-id quotestream_backfill --from-date ... --to-date ...`.
The interval's history goes through the gate into a scratch table (a load job), then one
INSERT adds only the event_ids `quotes` lacks: safe beside the streaming buffer, and running
an interval twice changes nothing.
""",
)
def quotestream_backfill() -> None:
    @task
    def backfill(data_interval_start=None, data_interval_end=None, run_id=None) -> str:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        service = bootstrap.build_backfill_service(Settings())
        return str(service.run(data_interval_start, data_interval_end, run_id))

    backfill()


quotestream_backfill()
