"""Dataflow v1b3 over REST, as the flex-template launcher and the jobs client call it: launches
(fresh and in-place updates), jobs listed a few per page, and drains and cancels that take a few
reads to settle, as the real ones take minutes.

A launch reads its flex-template spec from Cloud Storage (the Storage stand-in) as Dataflow
does, and refuses a spec that is not there and parameters its metadata does not declare, or
lacks a required one, or whose value fails a declared regex: a google.rpc.Status whose details
carry InvalidTemplateParameters, the error detail Dataflow's REST reference documents for it
(the message texts are the stand-in's). The job's launcher runs the spec's image; its workers
run the launch's sdkContainerImage, else the spec's default environment's, else Beam's stock
image, which has none of the project's code. When permissions are enforced, each method needs
the permission Dataflow's access-control page names (dataflow.jobs.create, .list, .get,
.cancel; a drain is dataflow.jobs.updateContents), a launch also iam.serviceAccounts.actAs on
the job's service account and storage.objects.get on the spec; and a job whose images were
never pushed, or whose account cannot download them, fails after it was accepted, as a
launcher VM that cannot pull its image does."""

from __future__ import annotations

import copy
import json
import re
import threading
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from google.cloud.dataflow_v1beta3 import JobState, ListJobsRequest

from tests.support.standins.artifact_registry import ArtifactRegistryState, repository_of
from tests.support.standins.permissions import Authority, member_of
from tests.support.standins.recorder import Recorder
from tests.support.standins.storage import StorageState
from tests.support.standins.wire import ApiError, enum_name, now, rfc3339

# What workers run without an sdkContainerImage: Beam's own image, without the project.
BEAM_STOCK_IMAGE = "apache/beam_python3.12_sdk:2.77.0"
INVALID_PARAMETERS = "type.googleapis.com/google.dataflow.v1beta3.InvalidTemplateParameters"

TERMINAL = frozenset(
    {
        "JOB_STATE_DONE",
        "JOB_STATE_DRAINED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_FAILED",
        "JOB_STATE_UPDATED",
    }
)
# A requested state, and the state the job shows until it gets there.
_ON_THE_WAY = {
    "JOB_STATE_DRAINED": "JOB_STATE_DRAINING",
    "JOB_STATE_CANCELLED": "JOB_STATE_CANCELLING",
}


class DataflowState:
    """Jobs by id. Each job is its Job resource as served, plus the
    `launchParameter` it was launched with (kept for tests, never served). One project in one
    region, whichever the request names: a test's jobs are all its adapter's."""

    def __init__(
        self, storage: StorageState, registry: ArtifactRegistryState, authority: Authority
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._authority = authority
        self._lock = threading.RLock()
        self.page_size = 2  # small, so that clients have to follow nextPageToken
        self.settle_reads = 2  # a drain or cancel shows its final state from this read on
        self.stuck_draining = False  # drains never finish, as with a pipeline that cannot
        self.update_incompatible = False  # update launches are accepted, then their job fails
        self.jobs: dict[str, dict[str, Any]] = {}
        self._settling: dict[str, list[Any]] = {}  # job id -> [final state, reads left]
        self._created = 0
        self._last_create = now()

    def reset(self) -> None:
        with self._lock:
            self.page_size = 2
            self.settle_reads = 2
            self.stuck_draining = False
            self.update_incompatible = False
            self.jobs.clear()
            self._settling.clear()

    # Test hooks.

    def add_job(
        self,
        name: str,
        state: str = "JOB_STATE_RUNNING",
        create_time: datetime | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            return self._create(name, enum_name(JobState, state), create_time)

    def jobs_named(self, name: str) -> list[dict[str, Any]]:
        """Oldest first; the stored dicts themselves."""
        with self._lock:
            return [job for job in self._oldest_first() if job["name"] == name]

    def fail(self, job_name: str) -> None:
        """The newest job of that name fails."""
        with self._lock:
            job = self.jobs_named(job_name)[-1]
            self._settling.pop(job["id"], None)
            self._set_state(job, "JOB_STATE_FAILED")

    # The API.

    def launch(
        self, project_id: str, location: str, request: dict[str, Any], authorization: str = ""
    ) -> dict[str, Any]:
        parameter = request.get("launchParameter") or {}
        project = f"projects/{project_id}"
        self._authority.require(authorization, "dataflow.jobs.create", project)
        environment = parameter.get("environment") or {}
        account = environment.get("serviceAccountEmail") or default_compute_account(project_id)
        self._authority.require(
            authorization,
            "iam.serviceAccounts.actAs",
            f"{project}/serviceAccounts/{account}",
            project,
        )
        name = parameter.get("jobName", "")
        if not name:
            raise ApiError(400, "INVALID_ARGUMENT", "launchParameter.jobName is required")
        spec = self._spec(authorization, parameter.get("containerSpecGcsPath", ""))
        _check_parameters(spec.get("metadata") or {}, parameter.get("parameters") or {})
        with self._lock:
            same = [
                job
                for job in self._oldest_first()
                if job["name"] == name and job["currentState"] not in TERMINAL
            ]
            replaced = None
            if parameter.get("update"):
                running = [job for job in same if job["currentState"] == "JOB_STATE_RUNNING"]
                if not running:
                    raise ApiError(
                        404,
                        "NOT_FOUND",
                        f"Unable to update job {name}: no running job of that name",
                    )
                replaced = running[-1]
            elif same:
                raise ApiError(
                    409,
                    "ALREADY_EXISTS",
                    f"There is already an active job named {name} with id: {same[-1]['id']}. "
                    "If you want to submit a second job, try again by setting a different name.",
                )
            if request.get("validateOnly"):
                return {}  # a dry run launches nothing, so answers no job
            metadata = spec.get("metadata") or {}
            job = self._create(name, "JOB_STATE_RUNNING", None)
            job["type"] = "JOB_TYPE_STREAMING" if metadata.get("streaming") else "JOB_TYPE_BATCH"
            job["launchParameter"] = copy.deepcopy(parameter)
            job["launcherImage"] = spec.get("image", "")
            job["workerImage"] = (
                environment.get("sdkContainerImage")
                or (spec.get("defaultEnvironment") or {}).get("sdkContainerImage")
                or BEAM_STOCK_IMAGE
            )
            job["serviceAccount"] = account
            pull_failure = self._pull_failure(job)
            if pull_failure:
                job["failure"] = pull_failure
                self._set_state(job, "JOB_STATE_FAILED")
            elif replaced is not None and self.update_incompatible:
                # Dataflow checks compatibility after accepting the launch: the replacement
                # fails and the running job carries on untouched.
                self._set_state(job, "JOB_STATE_FAILED")
            elif replaced is not None:
                self._set_state(replaced, "JOB_STATE_UPDATED")
                replaced["replacedByJobId"] = job["id"]
                job["replaceJobId"] = replaced["id"]
            served = _served(job, project_id, location)
            return {"job": {**served, "currentState": "JOB_STATE_PENDING"}}

    def _spec(self, authorization: str, path: str) -> dict[str, Any]:
        """The flex-template spec at `path`, read as the caller."""
        match = re.fullmatch(r"gs://([^/]+)/(.+)", path)
        if match is None:
            raise ApiError(
                400, "INVALID_ARGUMENT", f"containerSpecGcsPath {path!r} is not a gs:// path"
            )
        bucket, name = match.groups()
        self._authority.require(
            authorization, "storage.objects.get", *self._storage.bucket_chain(bucket)
        )
        data = self._storage.read(bucket, name)
        if data is None:
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                f"Unable to read the template file {path}: no such object in Cloud Storage",
            )
        try:
            spec: dict[str, Any] = json.loads(data)
        except ValueError:
            raise ApiError(
                400, "INVALID_ARGUMENT", f"The template file {path} is not a JSON spec"
            ) from None
        if not spec.get("image"):
            raise ApiError(400, "INVALID_ARGUMENT", f"The template file {path} names no image")
        return spec

    def _pull_failure(self, job: dict[str, Any]) -> str | None:
        """Why the job's VMs could not start their images, if they could not (enforced only:
        the adapter tests launch images nobody pushed)."""
        if not self._authority.enforced:
            return None
        member = member_of(job["serviceAccount"])
        for image in (job["launcherImage"], job["workerImage"]):
            repository = repository_of(image)
            if repository is None or self._registry.digest_of(image) is None:
                return f"standin: {image} could not be pulled: no such image"
            if not self._authority.member_may(
                member,
                "artifactregistry.repositories.downloadArtifacts",
                repository,
                repository.split("/locations/")[0],
            ):
                return f"standin: {job['serviceAccount']} may not pull {image}"
        return None

    def list_jobs(
        self, project_id: str, location: str, query: dict[str, str], authorization: str = ""
    ) -> dict[str, Any]:
        self._authority.require(authorization, "dataflow.jobs.list", f"projects/{project_id}")
        kind = enum_name(ListJobsRequest.Filter, query.get("filter", "0"))
        with self._lock:
            jobs = [
                job
                for job in reversed(self._oldest_first())
                if ("name" not in query or job["name"] == query["name"])
                and (kind != "ACTIVE" or job["currentState"] not in TERMINAL)
                and (kind != "TERMINATED" or job["currentState"] in TERMINAL)
            ]
            start = int(query.get("pageToken") or 0)
            end = start + min(int(query.get("pageSize") or self.page_size), self.page_size)
            page = [self._read(job, project_id, location) for job in jobs[start:end]]
            answer: dict[str, Any] = {"jobs": page}
            if end < len(jobs):
                answer["nextPageToken"] = str(end)
            return answer

    def get_job(
        self, project_id: str, location: str, job_id: str, authorization: str = ""
    ) -> dict[str, Any]:
        self._authority.require(authorization, "dataflow.jobs.get", f"projects/{project_id}")
        with self._lock:
            return self._read(self._job(job_id), project_id, location)

    def update_job(
        self,
        project_id: str,
        location: str,
        job_id: str,
        body: dict[str, Any],
        authorization: str = "",
    ) -> dict[str, Any]:
        """Only `requestedState` is acted on: that is all a drain or cancel sends."""
        requested_name = enum_name(JobState, body.get("requestedState", 0))
        permission = (
            "dataflow.jobs.cancel"
            if requested_name == "JOB_STATE_CANCELLED"
            else "dataflow.jobs.updateContents"
        )
        self._authority.require(authorization, permission, f"projects/{project_id}")
        with self._lock:
            job = self._job(job_id)
            if "requestedState" not in body:
                raise ApiError(400, "INVALID_ARGUMENT", "only requestedState can be updated")
            requested = enum_name(JobState, body["requestedState"])
            current = job["currentState"]
            if current in TERMINAL:
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"Workflow modification failed: job {job_id} is already {current}",
                )
            if requested not in _ON_THE_WAY:
                raise ApiError(400, "INVALID_ARGUMENT", f"cannot request {requested}")
            if current == _ON_THE_WAY[requested]:
                return _served(job, project_id, location)  # asked again: nothing changes
            if requested == "JOB_STATE_DRAINED" and current != "JOB_STATE_RUNNING":
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"job {job_id} is {current}: only a running job drains",
                )
            job["requestedState"] = requested
            self._set_state(job, _ON_THE_WAY[requested])
            self._settling[job_id] = [requested, self.settle_reads]
            return _served(job, project_id, location)

    def _oldest_first(self) -> list[dict[str, Any]]:
        # One format for every createTime (add_job's included), so the strings sort as times.
        return sorted(self.jobs.values(), key=lambda job: str(job["createTime"]))

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(
                404, "NOT_FOUND", f"Information about job {job_id} could not be found in our system"
            )
        return job

    def _read(self, job: dict[str, Any], project_id: str, location: str) -> dict[str, Any]:
        """A read brings a settling job one read closer to its final state."""
        settling = self._settling.get(job["id"])
        if settling is not None:
            settling[1] -= 1
            stuck = self.stuck_draining and settling[0] == "JOB_STATE_DRAINED"
            if settling[1] <= 0 and not stuck:
                del self._settling[job["id"]]
                self._set_state(job, settling[0])
        return _served(job, project_id, location)

    def _create(self, name: str, state: str, create_time: datetime | None) -> dict[str, Any]:
        self._created += 1
        if create_time is None:  # strictly increasing, as the newest-job lookups rely on
            create_time = max(now(), self._last_create + timedelta(microseconds=1))
            self._last_create = create_time
        job_id = f"{create_time:%Y-%m-%d_%H_%M_%S}-{10**15 + self._created}"
        job = {
            "id": job_id,
            "name": name,
            "type": "JOB_TYPE_STREAMING",
            "createTime": rfc3339(create_time),
        }
        self._set_state(job, state)
        self.jobs[job_id] = job
        return job

    @staticmethod
    def _set_state(job: dict[str, Any], state: str) -> None:
        job["currentState"] = state
        job["currentStateTime"] = rfc3339(now())


# What the stand-in keeps of a job for tests, never served.
_KEPT = {"launchParameter", "launcherImage", "workerImage", "serviceAccount", "failure"}


def flex_template_spec(image: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The spec `gcloud dataflow flex-template build --image --sdk-language=PYTHON
    --metadata-file` writes: the launcher's image, the SDK, the metadata as the file has it."""
    return {"image": image, "sdkInfo": {"language": "PYTHON"}, "metadata": metadata}


def default_compute_account(project_id: str) -> str:
    """Who a job runs as when the launch names no account: the project's default Compute
    Engine account (named after the project's number, which the stand-in has no need of)."""
    return f"{project_id}-compute@developer.gserviceaccount.com"


def _check_parameters(metadata: dict[str, Any], parameters: dict[str, str]) -> None:
    declared = {p["name"]: p for p in metadata.get("parameters") or [] if "name" in p}
    violations = [
        {
            "parameter": name,
            "description": "Unrecognized parameter: the template's metadata does not declare it",
        }
        for name in sorted(set(parameters) - set(declared))
    ]
    violations += [
        {"parameter": name, "description": "Missing required parameter"}
        for name, declaration in sorted(declared.items())
        if not declaration.get("isOptional") and name not in parameters
    ]
    violations += [
        {"parameter": name, "description": f"Value does not match the regex {regex}"}
        for name, value in sorted(parameters.items())
        if name in declared
        for regex in declared[name].get("regexes") or []
        if not re.fullmatch(regex, value)
    ]
    if violations:
        raise ApiError(
            400,
            "INVALID_ARGUMENT",
            "The template parameters are invalid.",
            details=[{"@type": INVALID_PARAMETERS, "parameterViolations": violations}],
        )


def _served(job: dict[str, Any], project_id: str, location: str) -> dict[str, Any]:
    served = {key: value for key, value in job.items() if key not in _KEPT}
    return copy.deepcopy(served | {"projectId": project_id, "location": location})


def router(state: DataflowState) -> APIRouter:
    api = APIRouter(prefix="/v1b3/projects/{project_id:segment}/locations/{location:segment}")

    @api.post("/flexTemplates:launch")
    async def launch(
        project_id: str, location: str, request: Request, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        return state.launch(project_id, location, body, _authorization(request))

    @api.get("/jobs")
    async def list_jobs(project_id: str, location: str, request: Request) -> dict[str, Any]:
        query = dict(request.query_params)
        return state.list_jobs(project_id, location, query, _authorization(request))

    @api.get("/jobs/{job_id:segment}")
    async def get_job(
        project_id: str, location: str, job_id: str, request: Request
    ) -> dict[str, Any]:
        return state.get_job(project_id, location, job_id, _authorization(request))

    @api.put("/jobs/{job_id:segment}")
    async def update_job(
        project_id: str,
        location: str,
        job_id: str,
        request: Request,
        body: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        return state.update_job(project_id, location, job_id, body, _authorization(request))

    return api


def _authorization(request: Request) -> str:
    return request.headers.get("authorization", "")


def requested_state(body: dict[str, Any]) -> str:
    """The state a job update asked for, by name: the REST clients send enums as numbers
    ($alt=json;enum-encoding=int)."""
    return enum_name(JobState, body["requestedState"])


def launch_parameters(recorder: Recorder) -> list[dict[str, Any]]:
    """The launch parameters of every flex-template launch, as they went over the wire."""
    return [call.body["launchParameter"] for call in recorder.of("dataflow", "POST") if call.body]
