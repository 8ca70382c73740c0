"""Stop the jobs and delete the subscriptions, topics and dataset (asks for confirmation)."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from quotestream.entrypoints.dags import default_args


@dag(
    dag_id="quotestream_teardown",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(retries=0),
    params={
        "confirm": Param(
            "", type="string", description="type the project id to delete its quotestream data"
        )
    },
    tags=["quotestream", "provisioning"],
    # Who may run it: Op (and Admin). Read by the FAB auth manager (Composer's), which grants
    # these per-DAG permissions to the role; it takes nothing from roles with global DAG
    # permissions (FAB's User), and other auth managers ignore it.
    access_control={
        "Op": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}
    },
    doc_md="""
Manual and destructive: stops the streaming jobs, deletes the subscriptions, the topics and
the dataset with all its tables. It does nothing unless the `confirm` param equals the
project id.
""",
)
def quotestream_teardown() -> None:
    @task
    def teardown(params=None) -> list[str]:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        settings = Settings()
        if params["confirm"] != settings.project:
            raise ValueError(
                f"not confirmed: set the param confirm to {settings.project!r} to tear it down"
            )
        return bootstrap.build_teardown_service(settings).run()

    teardown()


quotestream_teardown()
