"""Create or update the Pub/Sub topics and subscriptions, the BigQuery tables and, on Google
Cloud, Cloud Monitoring's alert policies and dashboard."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from quotestream.entrypoints.dags import RESOURCES_ASSET_URI, default_args


@dag(
    dag_id="quotestream_provision",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Provisioning looks each resource up, then creates it: two runs at once could both create
    # an alert policy (Monitoring does not refuse a second one of the same name).
    max_active_runs=1,
    default_args=default_args(),
    tags=["quotestream", "provisioning"],
    doc_md="""
Idempotent provisioning: topic `quotes`, subscription `quotes-load`, the dataset and its
tables; locally also the dead-letter topic `quotes-dead-letter`, the policy that moves
undeliverable messages there and `quotes-dead-letter-hold` (on Google Cloud Dataflow reads
`quotes-load`, which must have no dead-letter policy); on Google Cloud also the Cloud
Monitoring alert policies (each job's system lag and data freshness, the subscription's
backlog and oldest unacked age, the load's dead-letter rate, the API's 5xx rate; sent to
`QUOTESTREAM_ALERT_NOTIFICATION_CHANNELS`) and the `quotestream: pipeline` dashboard, so
alerts reach people even when Airflow is down. Each resource is reported as created, exists
or updated; an incompatible change fails the task naming the column or field. Safe to
trigger any time.
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
