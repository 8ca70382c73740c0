"""Keep the extract and load jobs running (one copy each) and check their health."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from quotestream.orchestration import QUOTES_ASSET_URI, default_args


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
(looked up by their stable names, so never a second copy), then check health: job states,
freshness of `quotes`, dead-letter ratio. The figures go out as an event of the `quotes`
asset; an unhealthy pipeline fails `check_health`, which alerts.
""",
)
def quotestream_streaming() -> None:
    @task(multiple_outputs=False)
    def ensure_running() -> dict[str, str]:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        return bootstrap.build_streaming_service(Settings()).ensure_running()

    @task(outlets=[Asset(QUOTES_ASSET_URI)], retries=0, multiple_outputs=False)
    def check_health(outlet_events=None) -> dict:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        report = bootstrap.build_streaming_service(Settings()).health()
        outlet_events[Asset(QUOTES_ASSET_URI)].extra = report.figures
        if not report.healthy:
            raise RuntimeError("unhealthy: " + "; ".join(report.problems))
        return report.figures

    ensure_running() >> check_health()


quotestream_streaming()
