"""Cloud Run Admin v2 over REST, as run_v2.ServicesClient(transport="rest") calls it: services
created and updated through long-running operations, reconciling for a few reads after each
deploy, a revision per generation (which a knob makes fail). When permissions are enforced a
read needs run.services.get on the service, a create run.services.create on the project, an
update run.services.update on the service, an operation run.operations.get on the project, and
a create or update that names the service's account iam.serviceAccounts.actAs on that account,
as Cloud Run's IAM reference lists them."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from tests.support.standins.permissions import Authority
from tests.support.standins.wire import ApiError, now, rfc3339

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"


class CloudRunState:
    """Services by full name (`projects/p/locations/l/services/s`), as served."""

    def __init__(self, authority: Authority) -> None:
        self._authority = authority
        self._lock = threading.Lock()
        self.services: dict[str, dict[str, Any]] = {}
        self.service_uri: str | None = None  # else https://{service}-standin.a.run.app
        self.revision_fails: str | None = None  # the next deploy's revision fails so
        # A deploy's operation, and its service, answer done from this read on.
        self.operation_reads = 1
        self._operations: dict[str, list[Any]] = {}  # name -> [reads left, the done operation]
        self._reconciling: dict[str, list[Any]] = {}  # service -> [reads left, its outcome]

    def reset(self) -> None:
        with self._lock:
            self.services.clear()
            self.service_uri = None
            self.revision_fails = None
            self.operation_reads = 1
            self._operations.clear()
            self._reconciling.clear()

    def get(self, name: str, authorization: str = "") -> dict[str, Any]:
        self._authority.require(authorization, "run.services.get", name, _project(name))
        with self._lock:
            service = self._service(name)
            reconciling = self._reconciling.get(name)
            if reconciling is not None and reconciling[0] > 0:
                reconciling[0] -= 1
            elif reconciling is not None:
                del self._reconciling[name]
                service.update(reconciling[1])
            return copy.deepcopy(service)

    def create(
        self, parent: str, query: dict[str, str], body: dict[str, Any], authorization: str = ""
    ) -> dict[str, Any]:
        self._authority.require(authorization, "run.services.create", _project(parent))
        self._require_act_as(authorization, parent, body)
        service_id = query.get("serviceId", "")
        if not service_id:
            raise ApiError(400, "INVALID_ARGUMENT", "serviceId is required")
        name = f"{parent}/services/{service_id}"
        with self._lock:
            if name in self.services:
                raise ApiError(409, "ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
            return self._deploy(name, body, None, _true(query, "validateOnly"))

    def update(
        self, name: str, query: dict[str, str], body: dict[str, Any], authorization: str = ""
    ) -> dict[str, Any]:
        """Without `updateMask` the sent service replaces the stored one; with it, only the
        masked top-level fields do."""
        self._authority.require(authorization, "run.services.update", name, _project(name))
        self._require_act_as(authorization, name, body)
        with self._lock:
            previous = self.services.get(name)
            if previous is None and not _true(query, "allowMissing"):
                raise ApiError(404, "NOT_FOUND", f"Resource '{name}' does not exist.")
            fields = body
            if query.get("updateMask") and previous is not None:
                fields = copy.deepcopy(previous)
                for top in {path.split(".")[0] for path in query["updateMask"].split(",")}:
                    if top in body:
                        fields[top] = body[top]
                    else:
                        fields.pop(top, None)
            return self._deploy(name, fields, previous, _true(query, "validateOnly"))

    def get_operation(self, name: str, authorization: str = "") -> dict[str, Any]:
        self._authority.require(authorization, "run.operations.get", _project(name))
        with self._lock:
            operation = self._operations.get(name)
            if operation is None:
                raise ApiError(404, "NOT_FOUND", f"Operation '{name}' not found.")
            operation[0] -= 1
            done: dict[str, Any] = operation[1]
            if operation[0] > 0:
                return {"name": name, "done": False, "metadata": done["metadata"]}
            return copy.deepcopy(done)

    def _require_act_as(self, authorization: str, name: str, body: dict[str, Any]) -> None:
        account = (body.get("template") or {}).get("serviceAccount")
        if account:
            project = _project(name)
            self._authority.require(
                authorization,
                "iam.serviceAccounts.actAs",
                f"{project}/serviceAccounts/{account}",
                project,
            )

    def _service(self, name: str) -> dict[str, Any]:
        service = self.services.get(name)
        if service is None:
            raise ApiError(404, "NOT_FOUND", f"Resource '{name}' does not exist.")
        return service

    def _deploy(
        self,
        name: str,
        fields: dict[str, Any],
        previous: dict[str, Any] | None,
        validate_only: bool,
    ) -> dict[str, Any]:
        """The service after this deploy, and the operation that reports it. A failing revision
        leaves the previous one serving, and its operation ends in error, as Cloud Run's does."""
        service_id = name.rsplit("/", 1)[1]
        generation = int(previous["generation"]) + 1 if previous else 1
        moment = rfc3339(now())
        revision = f"{name}/revisions/{service_id}-{generation:05d}-std"
        service = {
            **copy.deepcopy(fields),
            "name": name,
            "uid": previous["uid"] if previous else str(uuid.uuid4()),
            "generation": str(generation),
            "observedGeneration": str(generation),
            "createTime": previous["createTime"] if previous else moment,
            "updateTime": moment,
            "uri": self.service_uri or f"https://{service_id}-standin.a.run.app",
            "latestCreatedRevision": revision,
            "latestReadyRevision": revision,
            "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
        }
        failure = self.revision_fails
        if failure is not None:
            service["terminalCondition"] = {
                "type": "Ready",
                "state": "CONDITION_FAILED",
                "message": failure,
            }
            service.pop("latestReadyRevision")
            if previous and previous.get("latestReadyRevision"):
                service["latestReadyRevision"] = previous["latestReadyRevision"]
        typed = {"@type": SERVICE_TYPE, **service}
        operation_name = f"{name.split('/services/')[0]}/operations/{uuid.uuid4()}"
        done: dict[str, Any] = {"name": operation_name, "done": True, "metadata": typed}
        if failure is None:
            done["response"] = typed
        else:
            done["error"] = {"code": 9, "message": failure}  # FAILED_PRECONDITION
        if validate_only:
            return done  # nothing deployed, nothing to wait for
        self.revision_fails = None
        outcome: dict[str, Any] = {
            key: service.pop(key)
            for key in ("terminalCondition", "latestReadyRevision")
            if key in service
        }
        if self.operation_reads > 1:
            # Until then the service says it is being brought to the state just asked for.
            self._reconciling[name] = [self.operation_reads - 1, {**outcome, "reconciling": False}]
            service["reconciling"] = True
            service["terminalCondition"] = {"type": "Ready", "state": "CONDITION_RECONCILING"}
            if previous and previous.get("latestReadyRevision"):
                service["latestReadyRevision"] = previous["latestReadyRevision"]
        else:
            service.update(outcome)
        self.services[name] = service
        self._operations[operation_name] = [self.operation_reads, done]
        return {"name": operation_name, "done": False, "metadata": typed}


def _true(query: dict[str, str], key: str) -> bool:
    return query.get(key, "").lower() == "true"


def _project(name: str) -> str:
    return "/".join(name.split("/")[:2])


def router(state: CloudRunState) -> APIRouter:
    api = APIRouter(prefix="/v2/projects/{project:segment}/locations/{location:segment}")

    @api.get("/services/{service:segment}")
    async def get_service(
        project: str, location: str, service: str, request: Request
    ) -> dict[str, Any]:
        return state.get(_name(project, location, service), _authorization(request))

    @api.post("/services")
    async def create_service(
        project: str, location: str, request: Request, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        parent = f"projects/{project}/locations/{location}"
        query = dict(request.query_params)
        return state.create(parent, query, body, _authorization(request))

    @api.patch("/services/{service:segment}")
    async def update_service(
        project: str,
        location: str,
        service: str,
        request: Request,
        body: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        name = _name(project, location, service)
        return state.update(name, dict(request.query_params), body, _authorization(request))

    @api.get("/operations/{operation:segment}")
    async def get_operation(
        project: str, location: str, operation: str, request: Request
    ) -> dict[str, Any]:
        name = f"projects/{project}/locations/{location}/operations/{operation}"
        return state.get_operation(name, _authorization(request))

    return api


def _authorization(request: Request) -> str:
    return request.headers.get("authorization", "")


def _name(project: str, location: str, service: str) -> str:
    return f"projects/{project}/locations/{location}/services/{service}"
