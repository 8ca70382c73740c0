"""Cloud Storage's JSON API (v1) as google-cloud-storage calls it: buckets created and read,
objects uploaded (media and multipart), read back (metadata, and content through the
download path), listed and deleted, each call checked against the caller's permissions.
Errors come in the JSON API's own shape (`error.errors[].reason`), which is not the other
APIs'. An upload over an existing object needs storage.objects.delete as well as
storage.objects.create, as Cloud Storage's permission reference says."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import quote

import google_crc32c
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tests.support.standins.permissions import Authority
from tests.support.standins.wire import now, rfc3339

_REASONS = {400: "invalid", 401: "required", 403: "forbidden", 404: "notFound", 409: "conflict"}


class StorageError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def storage_error_response(error: StorageError) -> JSONResponse:
    reason = _REASONS.get(error.code, "backendError")
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "errors": [{"message": error.message, "domain": "global", "reason": reason}],
        }
    }
    return JSONResponse(body, status_code=error.code)


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    generation: int
    created: str = field(default_factory=lambda: rfc3339(now()))


@dataclass
class Bucket:
    name: str
    project: str  # the project id
    location: str
    objects: dict[str, StoredObject] = field(default_factory=dict)
    created: str = field(default_factory=lambda: rfc3339(now()))

    @property
    def resource(self) -> str:
        """Its name in IAM, as Cloud Storage writes it."""
        return f"projects/_/buckets/{self.name}"


class StorageState:
    def __init__(self, authority: Authority) -> None:
        self._lock = threading.RLock()
        self._authority = authority
        self.buckets: dict[str, Bucket] = {}
        self._generations = itertools.count(1_700_000_000_000_000)

    def reset(self) -> None:
        with self._lock:
            self.buckets.clear()

    # What other stand-ins and tests use directly (no caller, no check).

    def create_bucket(self, name: str, project: str, location: str = "US") -> Bucket:
        with self._lock:
            if name in self.buckets:
                raise StorageError(
                    409,
                    "Your previous request to create the named bucket succeeded and you "
                    "already own it.",
                )
            bucket = self.buckets[name] = Bucket(name, project, location.upper())
            return bucket

    def put(self, bucket: str, name: str, data: bytes, content_type: str) -> StoredObject:
        with self._lock:
            stored = StoredObject(data, content_type, next(self._generations))
            self._bucket(bucket).objects[name] = stored
            return stored

    def read(self, bucket: str, name: str) -> bytes | None:
        with self._lock:
            found = self.buckets.get(bucket)
            stored = found.objects.get(name) if found else None
            return stored.data if stored else None

    def bucket_chain(self, bucket: str) -> tuple[str, str]:
        """The IAM resources a call on `bucket` is judged on: the bucket, then its project."""
        with self._lock:
            found = self.buckets.get(bucket)
            project = found.project if found else "_"
            return (f"projects/_/buckets/{bucket}", f"projects/{project}")

    # The API, as a caller with `authorization` asks.

    def api_create_bucket(
        self, authorization: str, project: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._require(authorization, "storage.buckets.create", f"projects/{project}")
        name = str(body.get("name", ""))
        if not name:
            raise StorageError(400, "Required: bucket name")
        return self._bucket_json(self.create_bucket(name, project, body.get("location", "US")))

    def api_get_bucket(self, authorization: str, bucket: str) -> dict[str, Any]:
        self._require(authorization, "storage.buckets.get", *self.bucket_chain(bucket))
        with self._lock:
            return self._bucket_json(self._bucket(bucket))

    def api_upload(
        self,
        authorization: str,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str,
    ) -> dict[str, Any]:
        chain = self.bucket_chain(bucket)
        self._require(authorization, "storage.objects.create", *chain)
        with self._lock:
            exists = name in self._bucket(bucket).objects
        if exists:
            self._require(authorization, "storage.objects.delete", *chain)
        if not name:
            raise StorageError(400, "Required: object name")
        stored = self.put(bucket, name, data, content_type)
        return self._object_json(bucket, name, stored)

    def api_object(
        self, authorization: str, bucket: str, name: str
    ) -> tuple[StoredObject, dict[str, Any]]:
        self._require(authorization, "storage.objects.get", *self.bucket_chain(bucket))
        with self._lock:
            stored = self._bucket(bucket).objects.get(name)
            if stored is None:
                raise StorageError(404, f"No such object: {bucket}/{name}")
            return stored, self._object_json(bucket, name, stored)

    def api_list(self, authorization: str, bucket: str, prefix: str) -> dict[str, Any]:
        self._require(authorization, "storage.objects.list", *self.bucket_chain(bucket))
        with self._lock:
            found = self._bucket(bucket)
            items = [
                self._object_json(bucket, name, stored)
                for name, stored in sorted(found.objects.items())
                if name.startswith(prefix)
            ]
        return {"kind": "storage#objects", "items": items}

    def api_delete(self, authorization: str, bucket: str, name: str) -> None:
        self._require(authorization, "storage.objects.delete", *self.bucket_chain(bucket))
        with self._lock:
            if self._bucket(bucket).objects.pop(name, None) is None:
                raise StorageError(404, f"No such object: {bucket}/{name}")

    def _require(self, authorization: str, permission: str, *resources: str) -> None:
        if not self._authority.enforced:
            return
        member = self._authority.caller(authorization)
        if member is None:
            raise StorageError(401, "Anonymous caller does not have storage access.")
        if not self._authority.may(authorization, permission, *resources):
            email = member.split(":", 1)[1]
            kind = "bucket" if ".buckets." in permission else "object"
            raise StorageError(
                403,
                f"{email} does not have {permission} access to the Google Cloud Storage {kind}. "
                f"Permission '{permission}' denied on resource (or it may not exist).",
            )

    def _bucket(self, name: str) -> Bucket:
        found = self.buckets.get(name)
        if found is None:
            raise StorageError(404, "The specified bucket does not exist.")
        return found

    @staticmethod
    def _bucket_json(bucket: Bucket) -> dict[str, Any]:
        return {
            "kind": "storage#bucket",
            "id": bucket.name,
            "name": bucket.name,
            "location": bucket.location,
            "timeCreated": bucket.created,
            "metageneration": "1",
        }

    @staticmethod
    def _object_json(bucket: str, name: str, stored: StoredObject) -> dict[str, Any]:
        md5, crc32c = hashes(stored.data)
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{stored.generation}",
            "name": name,
            "bucket": bucket,
            "generation": str(stored.generation),
            "metageneration": "1",
            "contentType": stored.content_type,
            "size": str(len(stored.data)),
            "md5Hash": md5,
            "crc32c": crc32c,
            "timeCreated": stored.created,
            "updated": stored.created,
            "mediaLink": f"/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media",
        }


def hashes(data: bytes) -> tuple[str, str]:
    """The object's MD5 and CRC32C as the JSON API writes them: base64 of the digests."""
    md5 = base64.b64encode(
        hashlib.md5(data).digest()
    ).decode()  # the JSON API's checksum, not security
    crc = base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()
    return md5, crc


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes, str]:
    """A multipart/related upload: its JSON metadata part and its media part."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = list(message.iter_parts())  # type: ignore[attr-defined]
    if len(parts) != 2:
        raise StorageError(400, f"a multipart upload has 2 parts, not {len(parts)}")
    metadata = json.loads(parts[0].get_payload(decode=True) or b"{}")
    media = parts[1].get_payload(decode=True) or b""
    return metadata, media, parts[1].get_content_type()


def router(state: StorageState) -> APIRouter:
    api = APIRouter()

    def auth(request: Request) -> str:
        return request.headers.get("authorization", "")

    def linked(request: Request, item: dict[str, Any]) -> dict[str, Any]:
        """mediaLink as the JSON API gives it: an absolute URL, which clients download from."""
        base = str(request.base_url).rstrip("/")
        return {**item, "mediaLink": base + item["mediaLink"]}

    @api.post("/storage/v1/b")
    async def insert_bucket(request: Request) -> Any:
        project = request.query_params.get("project", "")
        return state.api_create_bucket(auth(request), project, await request.json())

    @api.get("/storage/v1/b/{bucket}")
    async def get_bucket(bucket: str, request: Request) -> Any:
        return state.api_get_bucket(auth(request), bucket)

    @api.get("/storage/v1/b/{bucket}/o")
    async def list_objects(bucket: str, request: Request) -> Any:
        listed = state.api_list(auth(request), bucket, request.query_params.get("prefix", ""))
        return {**listed, "items": [linked(request, item) for item in listed["items"]]}

    @api.get("/storage/v1/b/{bucket}/o/{name:path}")
    async def get_object(bucket: str, name: str, request: Request) -> Any:
        stored, metadata = state.api_object(auth(request), bucket, name)
        if request.query_params.get("alt") == "media":
            return _media(stored)
        return linked(request, metadata)

    @api.get("/download/storage/v1/b/{bucket}/o/{name:path}")
    async def download(bucket: str, name: str, request: Request) -> Any:
        stored, _ = state.api_object(auth(request), bucket, name)
        return _media(stored)

    @api.delete("/storage/v1/b/{bucket}/o/{name:path}")
    async def delete_object(bucket: str, name: str, request: Request) -> Any:
        state.api_delete(auth(request), bucket, name)
        return Response(status_code=204)

    @api.post("/upload/storage/v1/b/{bucket}/o")
    async def upload(bucket: str, request: Request) -> Any:
        kind = request.query_params.get("uploadType", "")
        body = await request.body()
        content_type = request.headers.get("content-type", "application/octet-stream")
        if kind == "media":
            name, data = request.query_params.get("name", ""), body
        elif kind == "multipart":
            metadata, data, content_type = _multipart(content_type, body)
            name = str(metadata.get("name") or request.query_params.get("name", ""))
        else:
            raise StorageError(400, f"standin: uploadType {kind!r} is not served")
        return linked(request, state.api_upload(auth(request), bucket, name, data, content_type))

    return api


def _media(stored: StoredObject) -> Response:
    md5, crc32c = hashes(stored.data)
    return Response(
        stored.data,
        media_type=stored.content_type,
        headers={
            "x-goog-hash": f"crc32c={crc32c},md5={md5}",
            "x-goog-generation": str(stored.generation),
        },
    )
