"""The JobRunner on Dataflow: flex-template launches, looked up by their stable job name,
replaced in place by update launches."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from google.cloud import dataflow_v1beta3 as dataflow

from quotestream.adapters.gcp.access import DEFAULT_ACCESS, ApiAccess
from quotestream.ports.jobs import InPlaceUpdate, Job, JobState, StopMode

_S = dataflow.JobState
_STATES = {
    _S.JOB_STATE_RUNNING: JobState.RUNNING,
    _S.JOB_STATE_PENDING: JobState.RUNNING,
    _S.JOB_STATE_QUEUED: JobState.RUNNING,
    _S.JOB_STATE_STOPPED: JobState.RUNNING,  # Dataflow's "not started yet"
    _S.JOB_STATE_DRAINING: JobState.STOPPING,
    _S.JOB_STATE_CANCELLING: JobState.STOPPING,
    _S.JOB_STATE_PAUSING: JobState.STOPPING,
    _S.JOB_STATE_PAUSED: JobState.STOPPING,
    _S.JOB_STATE_RESOURCE_CLEANING_UP: JobState.STOPPING,
    _S.JOB_STATE_DONE: JobState.DONE,
    _S.JOB_STATE_DRAINED: JobState.DONE,
    _S.JOB_STATE_UPDATED: JobState.DONE,
    _S.JOB_STATE_FAILED: JobState.FAILED,
    _S.JOB_STATE_CANCELLED: JobState.CANCELLED,
}


# How often an update's verdict is asked for: Dataflow takes minutes to hand a job over.
_POLL_S = 5.0


def _state_name(state: Any) -> str:
    """proto-plus hands a state this client does not know out as a bare number."""
    return str(getattr(state, "name", state))


def _ms(timestamp: Any) -> int:
    """proto-plus hands timestamps out as datetimes."""
    return int(timestamp.timestamp() * 1000)


class LaunchRefused(RuntimeError):
    """The configuration cannot launch a job that would work (the message says why)."""


class DataflowJobRunner:
    def __init__(
        self,
        project: str,
        region: str,
        templates: Mapping[str, str],
        parameters: Mapping[str, str],
        environment: Mapping[str, Any],
        *,
        access: ApiAccess = DEFAULT_ACCESS,
        cannot_launch: str | None = None,
    ) -> None:
        self._project = project
        self._region = region
        self._templates = dict(templates)
        self._parameters = dict(parameters)
        self._environment = dict(environment)
        self._cannot_launch = cannot_launch
        self._jobs = dataflow.JobsV1Beta3Client(**access.client_kwargs())
        self._launcher = dataflow.FlexTemplatesServiceClient(**access.client_kwargs())

    def find(self, name: str) -> Job | None:
        # Names are only unique among active jobs: take the newest of that name.
        matches = [
            job
            for job in self._jobs.list_jobs(
                request={
                    "project_id": self._project,
                    "location": self._region,
                    "filter": dataflow.ListJobsRequest.Filter.ALL,
                    "name": name,
                }
            )
            if job.name == name
        ]
        if not matches:
            return None
        newest = max(matches, key=lambda job: _ms(job.create_time))
        # An unknown state is treated as still stopping: never launch a second copy on a guess.
        state = _STATES.get(newest.current_state, JobState.STOPPING)
        started = _ms(newest.create_time)
        return Job(name, newest.id, state, started, _state_name(newest.current_state))

    def launch(self, name: str, pipeline: str, args: Sequence[str]) -> Job:
        current = self.find(name)
        if current is not None and not current.state.terminal:
            raise RuntimeError(f"job {name} is already {current.state} ({current.job_id})")
        return self._launch(name, pipeline, args, {})

    def replace(self, name: str, pipeline: str, update: InPlaceUpdate) -> Job | None:
        """An update launch: Dataflow starts the new job from the running one's state (windows,
        timers, unacknowledged messages) and ends the old one as JOB_STATE_UPDATED. `renamed`
        maps old transform names to new ones for steps the new code renamed. Dataflow checks
        compatibility after accepting the launch, so this waits for the verdict."""
        current = self.find(name)
        if current is None or current.state is not JobState.RUNNING:
            raise RuntimeError(f"job {name} is not running: nothing to update in place")
        launch = {"update": True, "transform_name_mappings": dict(update.renamed)}
        replacement = self._launch(name, pipeline, update.args, launch)
        deadline = time.monotonic() + update.timeout_s
        while True:
            new = self._state_of(replacement.job_id)
            if _STATES.get(new) in (JobState.FAILED, JobState.CANCELLED):
                raise RuntimeError(
                    f"Dataflow refused the update of {name}: its replacement "
                    f"{replacement.job_id} is {_state_name(new)} (its log says why); "
                    f"{current.job_id} keeps running"
                )
            if self._state_of(current.job_id) == _S.JOB_STATE_UPDATED:
                return replacement
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name}: no verdict on the update after {update.timeout_s:.0f} s "
                    f"({replacement.job_id} is {_state_name(new)})"
                )
            time.sleep(_POLL_S)

    def _state_of(self, job_id: str) -> Any:
        job = self._jobs.get_job(
            request={"project_id": self._project, "location": self._region, "job_id": job_id}
        )
        return job.current_state

    def _launch(
        self, name: str, pipeline: str, args: Sequence[str], update: Mapping[str, Any]
    ) -> Job:
        if self._cannot_launch:
            raise LaunchRefused(self._cannot_launch)
        parameters = dict(self._parameters)
        for arg in args:
            key, _, value = arg.removeprefix("--").partition("=")
            parameters[key] = value
        response = self._launcher.launch_flex_template(
            request={
                "project_id": self._project,
                "location": self._region,
                "launch_parameter": {
                    "job_name": name,
                    "container_spec_gcs_path": self._templates[pipeline],
                    "parameters": parameters,
                    "environment": self._environment_of(pipeline),
                    **update,
                },
            }
        )
        job = response.job
        return Job(name, job.id, JobState.RUNNING, _ms(job.create_time))

    def _environment_of(self, pipeline: str) -> dict[str, Any]:
        environment = dict(self._environment)
        # Each pipeline's own image when the name says where: both install the same packages.
        image = environment.get("sdk_container_image")
        if image:
            environment["sdk_container_image"] = image.replace("{pipeline}", pipeline)
        return environment

    def stop(self, name: str, mode: StopMode) -> None:
        job = self.find(name)
        if job is None or job.state.terminal:
            return
        requested = _S.JOB_STATE_DRAINED if mode is StopMode.DRAIN else _S.JOB_STATE_CANCELLED
        self._jobs.update_job(
            request={
                "project_id": self._project,
                "location": self._region,
                "job_id": job.job_id,
                "job": {"requested_state": requested},
            }
        )
