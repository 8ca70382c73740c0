"""Create or update the Pub/Sub topics and subscriptions and the BigQuery tables."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from quotestream.entrypoints.dags import RESOURCES_ASSET_URI, default_args


@dag(
    dag_id="quotestream_provision",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(),
    tags=["quotestream", "provisioning"],
    doc_md="""
Idempotent provisioning: topics `quotes` and `quotes-dead-letter`, subscriptions
`quotes-load` (dead-letter policy) and `quotes-dead-letter-hold`, the dataset and its four
tables. Each resource is reported as created, exists or updated; an incompatible change
fails the task naming the column or field. Safe to trigger any time.
""",
)
def quotestream_provision() -> None:
    @task(outlets=[Asset(RESOURCES_ASSET_URI)])
    def provision() -> list[str]:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        results = bootstrap.build_provision_service(Settings()).run()
        return [str(result) for result in results]

    provision()


quotestream_provision()
