"""Resource Manager v3 over REST: a project id looked up for its number, which several Google
resource names (and service agents' emails) carry instead of the id."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter

from tests.support.standins.wire import ApiError


class ResourceManagerState:
    """`numbers` overrides a project's number (by default a stable 12-digit one derived from
    its id); the ids in `missing` answer 403, as Resource Manager does for a project that does
    not exist or that the caller may not see."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.missing: set[str] = set()

    def reset(self) -> None:
        self.numbers.clear()
        self.missing.clear()

    def number(self, project_id: str) -> int:
        if project_id in self.numbers:
            return self.numbers[project_id]
        digest = int(hashlib.sha256(project_id.encode()).hexdigest(), 16)
        return 10**11 + digest % (9 * 10**11)

    def get(self, project_id: str) -> dict[str, Any]:
        if project_id in self.missing:
            raise ApiError(403, "PERMISSION_DENIED", "The caller does not have permission")
        return {
            "name": f"projects/{self.number(project_id)}",
            "projectId": project_id,
            "displayName": project_id,
            "state": "ACTIVE",
        }


def router(state: ResourceManagerState) -> APIRouter:
    api = APIRouter()

    @api.get("/v3/projects/{project_id:segment}")
    async def get_project(project_id: str) -> dict[str, Any]:
        return state.get(project_id)

    return api
