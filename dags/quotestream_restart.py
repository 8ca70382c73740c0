"""Stop a streaming job (drain or cancel), wait until it ends, relaunch it under its name."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from quotestream.orchestration import default_args


@dag(
    dag_id="quotestream_restart",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(retries=0),
    params={
        "job": Param("load", enum=["load", "extract"], description="which pipeline"),
        "mode": Param("drain", enum=["drain", "cancel"], description="how to stop it"),
        "timeout_s": Param(600, type="integer", minimum=10, description="wait for the stop"),
    },
    tags=["quotestream", "streaming"],
    doc_md="""
Manual. There is no operator that updates a running streaming job, so this is the update:
stop it (`drain` finishes in-flight work on Dataflow; locally both modes stop the process),
wait for a terminal state, relaunch under the same name. What was not acknowledged stays
in the subscription and is read by the new job.
""",
)
def quotestream_restart() -> None:
    @task
    def restart(params=None) -> str:
        from quotestream import bootstrap
        from quotestream.jobs import StopMode
        from quotestream.settings import Settings

        service = bootstrap.build_restart_service(Settings())
        before, after = service.restart(
            params["job"], StopMode(params["mode"]), float(params["timeout_s"])
        )
        was = f"{before.job_id} ({before.state})" if before else "not running"
        return f"{after.name}: was {was}, now {after.job_id} ({after.state})"

    restart()


quotestream_restart()
