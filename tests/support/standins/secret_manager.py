"""Secret Manager v1 over REST: secret versions read and accessed, `latest` resolved to the newest,
payloads with the CRC32C that careful clients check. When permissions are enforced, reading a
version's metadata needs secretmanager.versions.get and its payload secretmanager.versions.access,
on the secret or its project."""

from __future__ import annotations

import base64
import threading
from typing import Any

import google_crc32c
from fastapi import APIRouter, Request

from tests.support.standins.permissions import Authority
from tests.support.standins.wire import ApiError, now, rfc3339


class SecretManagerState:
    """Versions by secret id, oldest first: `{"state": ..., "createTime": ..., "payload":
    bytes}`, which tests may change (to disable one, say). One project, whichever the request
    names, as with the other stand-ins."""

    def __init__(self, authority: Authority) -> None:
        self._authority = authority
        self._lock = threading.Lock()
        self.secrets: dict[str, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        with self._lock:
            self.secrets.clear()

    def add_version(self, secret: str, value: bytes, state: str = "ENABLED") -> dict[str, Any]:
        """The version added, as stored."""
        version = {"state": state, "createTime": rfc3339(now()), "payload": value}
        with self._lock:
            self.secrets.setdefault(secret, []).append(version)
        return version

    def get(
        self, project: str, secret: str, version: str, authorization: str = ""
    ) -> dict[str, Any]:
        self._require(authorization, "secretmanager.versions.get", project, secret)
        with self._lock:
            name, found = self._version(project, secret, version)
            return {"name": name, "state": found["state"], "createTime": found["createTime"]}

    def access(
        self, project: str, secret: str, version: str, authorization: str = ""
    ) -> dict[str, Any]:
        self._require(authorization, "secretmanager.versions.access", project, secret)
        with self._lock:
            name, found = self._version(project, secret, version)
            if found["state"] != "ENABLED":
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"Secret Version [{name}] is in {found['state']} state.",
                )
            data: bytes = found["payload"]
            payload = {
                "data": base64.b64encode(data).decode(),
                "dataCrc32c": str(google_crc32c.value(data)),  # int64: a string in JSON
            }
            return {"name": name, "payload": payload}

    def _require(self, authorization: str, permission: str, project: str, secret: str) -> None:
        resource = f"projects/{project}/secrets/{secret}"
        self._authority.require(authorization, permission, resource, f"projects/{project}")

    def _version(self, project: str, secret: str, version: str) -> tuple[str, dict[str, Any]]:
        """The version's resource name (`latest` resolved to its number) and the version."""
        secret_name = f"projects/{project}/secrets/{secret}"
        versions = self.secrets.get(secret)
        if not versions:
            raise ApiError(
                404, "NOT_FOUND", f"Secret [{secret_name}] not found or has no versions."
            )
        number = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= number <= len(versions):
            raise ApiError(
                404, "NOT_FOUND", f"Secret Version [{secret_name}/versions/{version}] not found."
            )
        return f"{secret_name}/versions/{number}", versions[number - 1]


def router(state: SecretManagerState) -> APIRouter:
    api = APIRouter(prefix="/v1/projects/{project:segment}/secrets/{secret:segment}")

    @api.get("/versions/{version:segment}")
    async def get_version(
        project: str, secret: str, version: str, request: Request
    ) -> dict[str, Any]:
        return state.get(project, secret, version, request.headers.get("authorization", ""))

    @api.get("/versions/{version:segment}:access")
    async def access_version(
        project: str, secret: str, version: str, request: Request
    ) -> dict[str, Any]:
        return state.access(project, secret, version, request.headers.get("authorization", ""))

    return api
