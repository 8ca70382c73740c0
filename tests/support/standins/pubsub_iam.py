"""Pub/Sub v1's IAM methods over REST (the emulator has none): topic and subscription policies,
with etags, for the GAPIC clients' REST transport."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Body

from tests.support.standins.iam import IamPolicies
from tests.support.standins.wire import ApiError


class PubSubIamState:
    """Policies by full resource name (`projects/p/topics/t`, `projects/p/subscriptions/s`);
    the resources in `missing` answer 404."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.iam = IamPolicies()
        self.missing: set[str] = set()

    @property
    def policies(self) -> dict[str, dict[str, Any]]:
        return self.iam.policies

    def reset(self) -> None:
        with self._lock:
            self.iam.reset()
            self.missing.clear()

    def get(self, resource: str) -> dict[str, Any]:
        self._exists(resource)
        return self.iam.get(resource)

    def set(self, resource: str, request: dict[str, Any]) -> dict[str, Any]:
        self._exists(resource)
        return self.iam.set(resource, request)

    def _exists(self, resource: str) -> None:
        with self._lock:
            if resource in self.missing:
                short = resource.rsplit("/", 1)[1]
                raise ApiError(404, "NOT_FOUND", f"Resource not found (resource={short}).")


def router(state: PubSubIamState) -> APIRouter:
    api = APIRouter(prefix="/v1/projects/{project:segment}")
    for kind in ("topics", "subscriptions"):
        _routes(api, state, kind)
    return api


def _routes(api: APIRouter, state: PubSubIamState, kind: str) -> None:
    # getIamPolicy is a GET in Pub/Sub's REST surface (Resource Manager's is a POST).
    @api.get(f"/{kind}/{{resource:segment}}:getIamPolicy", name=f"{kind}.getIamPolicy")
    async def get_iam_policy(project: str, resource: str) -> dict[str, Any]:
        return state.get(f"projects/{project}/{kind}/{resource}")

    @api.post(f"/{kind}/{{resource:segment}}:setIamPolicy", name=f"{kind}.setIamPolicy")
    async def set_iam_policy(
        project: str, resource: str, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        return state.set(f"projects/{project}/{kind}/{resource}", body)
