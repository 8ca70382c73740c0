"""Keep the extract and load jobs running (one copy each) and check their health."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from quotestream.entrypoints.dags import default_args, table_asset_uri

QUOTES = Asset(table_asset_uri("quotes"))


@dag(
    dag_id="quotestream_streaming",
    schedule=timedelta(minutes=5),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["quotestream", "streaming"],
    doc_md="""
Every 5 minutes: launch `quotestream-extract` / `quotestream-load` when they are not running
(looked up by their stable names, so never a second copy), then measure health: job states,
freshness of `quotes`, dead-letter ratio, and on Google Cloud the subscription backlog and
its oldest unacked age. The limits are the thresholds of the Cloud Monitoring alert
policies (`QUOTESTREAM_ALERT_THRESHOLDS` overrides both). The figures always go out as an
event of the `quotes` asset; an unhealthy pipeline then fails `alert_if_unhealthy`, which
alerts. Jobs launched in the last 10 minutes get time to deliver before staleness counts
against them.
""",
)
def quotestream_streaming() -> None:
    @task(multiple_outputs=False)
    def ensure_running() -> dict[str, str]:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        return bootstrap.build_streaming_service(Settings()).ensure_running()

    @task(outlets=[QUOTES], multiple_outputs=False)
    def measure_health(outlet_events=None) -> dict:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        report = bootstrap.build_streaming_service(Settings()).health()
        outlet_events[QUOTES].extra = report.figures
        return {"figures": report.figures, "problems": report.problems}

    @task(retries=0)
    def alert_if_unhealthy(health: dict) -> str:
        if health["problems"]:
            raise RuntimeError("unhealthy: " + "; ".join(health["problems"]))
        return "healthy"

    health = measure_health()
    ensure_running() >> health
    alert_if_unhealthy(health)


quotestream_streaming()
