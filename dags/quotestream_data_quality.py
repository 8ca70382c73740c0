"""Hourly data-quality checks of `quotes`; every result is a row of `dq_results`."""

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
from quotestream.services.quality_checks import checks_table

# The list of checks is the registry's (services/quality_checks.py), read when the file is
# parsed: a new check shows here without an edit.
DOC = f"""
Checks the hour *before* the run's data interval, so the streaming load has had an hour
to deliver late data. A failed check fails the task at once (no retry: the data will not
change), which alerts; errors reaching BigQuery are retried. All results are kept in
`dq_results` with the run id. A run still unfinished 30 minutes after it started
(`QUOTESTREAM_DATA_QUALITY_DEADLINE_S`) is stopped by the scheduler and alerts.
Thresholds are overridden by name with `QUOTESTREAM_QUALITY_THRESHOLDS` (JSON).

{checks_table()}
"""


@dag(
    dag_id="quotestream_data_quality",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    # A run still unfinished after this is stopped and alerts (QUOTESTREAM_DATA_QUALITY_DEADLINE_S).
    dagrun_timeout=run_deadline("data_quality_deadline_s"),
    on_failure_callback=alert_on_missed_deadline,
    default_args=default_args(retries=1, retry_delay=timedelta(seconds=10)),
    tags=["quotestream", "quality"],
    doc_md=DOC,
)
def quotestream_data_quality() -> None:
    # For lineage: what the checks read and where their results go.
    @task(inlets=[Asset(table_asset_uri("quotes"))], outlets=[Asset(table_asset_uri("dq_results"))])
    def check(data_interval_start=None, data_interval_end=None, run_id=None) -> list[str]:
        from quotestream import bootstrap
        from quotestream.entrypoints.dags import data_interval, fail_without_retry
        from quotestream.services.quality import DataQualityFailed
        from quotestream.settings import Settings

        start, end = data_interval(data_interval_start, data_interval_end)
        start, end = start - timedelta(hours=1), end - timedelta(hours=1)
        service = bootstrap.build_data_quality_service(Settings())
        recent = pendulum.now("UTC") - end < timedelta(hours=3)
        try:
            results = service.run(start, end, run_id, check_freshness=recent)
        except DataQualityFailed as failed:
            fail_without_retry(str(failed))
        return [str(result) for result in results]

    check()


quotestream_data_quality()
