"""Deploy the market-data API (create or update), wait until ready, smoke-test it."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from quotestream.entrypoints.dags import default_args


@dag(
    dag_id="quotestream_deploy_api",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(),
    tags=["quotestream", "deploy"],
    # Who may run it: Op (and Admin). Read by the FAB auth manager (Composer's), which grants
    # these per-DAG permissions to the role; it takes nothing from roles with global DAG
    # permissions (FAB's User), and other auth managers ignore it.
    access_control={
        "Op": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}
    },
    doc_md="""
Create-or-update of the API service (on Cloud Run: private, invokable by the Dataflow workers
and `QUOTESTREAM_API_INVOKERS`, the relay key mounted from Secret Manager once its latest
version is checked enabled), then `/ready` until ready and one `GET /v1/quotes/latest` (with an
identity token on Cloud Run). Locally the API process of `quotestream local up` stands in for
Cloud Run: a deploy replaces it with a process running the current code, on the same port.
""",
)
def quotestream_deploy_api() -> None:
    @task
    def deploy() -> list[str]:
        from quotestream import bootstrap
        from quotestream.settings import Settings

        return [str(result) for result in bootstrap.build_deployer(Settings()).deploy()]

    @task(retries=5)
    def smoke_test() -> str:
        from quotestream import bootstrap
        from quotestream.services.smoke import smoke_test_api
        from quotestream.settings import Settings

        deployer = bootstrap.build_deployer(Settings())
        return smoke_test_api(deployer.url(), timeout_s=60, headers=deployer.headers())

    deploy() >> smoke_test()


quotestream_deploy_api()
