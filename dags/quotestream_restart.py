"""Restart a streaming job: update it in place, or stop it and relaunch it under its name."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from quotestream.entrypoints.dags import default_args


@dag(
    dag_id="quotestream_restart",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args(retries=0),
    params={
        "job": Param("load", enum=["load", "extract"], description="which pipeline"),
        "mode": Param(
            "default",
            enum=["default", "update", "drain", "cancel"],
            description="default: the extract cancels, the load drains; update: in place",
        ),
        "transform_name_mappings": Param(
            {}, type="object", description="update only: old step name -> new step name"
        ),
        "timeout_s": Param(600, type="integer", minimum=10, description="wait for the stop"),
    },
    tags=["quotestream", "streaming"],
    # Who may run it: Op (and Admin). Read by the FAB auth manager (Composer's), which grants
    # these per-DAG permissions to the role; it takes nothing from roles with global DAG
    # permissions (FAB's User), and other auth managers ignore it.
    access_control={
        "Op": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}
    },
    doc_md="""
Manual. `update` replaces the running job in place: on Dataflow an update launch of the flex
template, which keeps the 1-minute bars' state and the unacknowledged messages (name renamed
steps in `transform_name_mappings`); locally, a drain and a relaunch. The other modes stop the
job, wait for a terminal state and relaunch it under the same name: `default` cancels the
extract (its cursor makes that lossless) and drains the load (its bars are written first).
What was not acknowledged stays in the subscription and is read by the new job.
""",
)
def quotestream_restart() -> None:
    @task
    def restart(params=None) -> str:
        from quotestream import bootstrap
        from quotestream.ports.jobs import StopMode
        from quotestream.settings import Settings

        service = bootstrap.build_restart_service(Settings())
        job, mode, timeout_s = params["job"], params["mode"], float(params["timeout_s"])
        if mode == "update":
            before, after = service.update(job, timeout_s, params["transform_name_mappings"])
        else:
            stop = None if mode == "default" else StopMode(mode)
            before, after = service.restart(job, stop, timeout_s)
        was = f"{before.job_id} ({before.state})" if before else "not running"
        return f"{after.name}: was {was}, now {after.job_id} ({after.state})"

    restart()


quotestream_restart()
