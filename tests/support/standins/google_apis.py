"""All the REST stand-ins as one loopback server: one app whose routes do not collide, every
request recorded, faults served before any routing. They share one project's IAM (`grants`),
which `authority` enforces once told to (`authority.enforced = True`)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from tests.support.standins import cli, cloud_run, dataflow, oauth, secret_manager, storage
from tests.support.standins.artifact_registry import ArtifactRegistryState
from tests.support.standins.permissions import Authority, Grants
from tests.support.standins.recorder import Call, Recorder
from tests.support.standins.wire import ApiError, error_response

# Which API a path belongs to, for the recorder and its faults.
_APIS = (
    (re.compile(r"^/v1b3/"), "dataflow"),
    (re.compile(r"^/v2/"), "run"),
    (re.compile(r"^/v1/projects/[^/]+/secrets/"), "secretmanager"),
    (re.compile(r"^/(upload/|download/)?storage/v1/"), "storage"),
    (re.compile(r"^/token$"), "oauth"),
    (re.compile(r"^/_standin/cli$"), "cli"),
)


def api_of(path: str) -> str:
    return next((api for pattern, api in _APIS if pattern.search(path)), "unknown")


class GoogleApis:
    """`url` is set by whoever serves `app` (see `serve`)."""

    def __init__(self) -> None:
        self.url = ""
        self.recorder = Recorder()
        self.oauth = oauth.OAuthState()
        self.grants = Grants()
        self.authority = Authority(self.grants, self.oauth)
        self.storage = storage.StorageState(self.authority)
        self.registry = ArtifactRegistryState()
        self.dataflow = dataflow.DataflowState(self.storage, self.registry, self.authority)
        self.run = cloud_run.CloudRunState(self.authority)
        self.secrets = secret_manager.SecretManagerState(self.authority)
        self.cli = cli.CliStandIn(self)
        self.app = self._app()

    def reset(self) -> None:
        self.recorder.clear()
        for state in (
            self.authority,
            self.storage,
            self.registry,
            self.dataflow,
            self.run,
            self.secrets,
            self.oauth,
        ):
            state.reset()
        self.cli.reset()

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.include_router(dataflow.router(self.dataflow))
        app.include_router(cloud_run.router(self.run))
        app.include_router(secret_manager.router(self.secrets))
        app.include_router(storage.router(self.storage))
        app.include_router(oauth.router(self.oauth))
        app.include_router(cli.router(self.cli))
        app.add_exception_handler(ApiError, _api_error)
        app.add_exception_handler(storage.StorageError, _storage_error)
        app.add_exception_handler(HTTPException, _http_error)
        app.add_exception_handler(RequestValidationError, _invalid_request)
        app.middleware("http")(self._record_then_fault)
        return app

    async def _record_then_fault(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        api = api_of(path)
        raw = await request.body()
        self.recorder.record(
            Call(
                api=api,
                method=request.method,
                path=path,
                query=parse_qs(request.url.query, keep_blank_values=True),
                body=_body(request.headers.get("content-type", ""), raw),
                authorization=request.headers.get("authorization", ""),
            )
        )
        fault = self.recorder.take_fault(api, request.method, path)
        if fault is not None:
            message = f"standin: {api} fails {request.method} {path} as told"
            return error_response(fault.status, message, retry_after_s=fault.retry_after_s)
        return await call_next(request)


def _body(content_type: str, raw: bytes) -> dict[str, Any] | None:
    """JSON as sent; a form (the token endpoint's) as its fields, and beside them the claims of
    its assertion (`target_audience`, `scope`, `iss`...), which say what was asked for."""
    if not raw:
        return None
    if content_type.startswith("application/x-www-form-urlencoded"):
        form: dict[str, Any] = oauth.form_of(raw)
        return form | (oauth.claims_of(form["assertion"]) if "assertion" in form else {})
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.code, error.message, error.status, details=error.details)


async def _storage_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, storage.StorageError)
    return storage.storage_error_response(error)


async def _http_error(request: Request, error: Exception) -> Response:
    """Unknown paths and verbs in Google's shape too, so a client calling something the
    stand-ins lack fails with a clear NotFound rather than a parse error."""
    assert isinstance(error, HTTPException)
    message = f"standin: no {request.method} {request.url.path} ({error.detail})"
    return error_response(error.status_code, message)


async def _invalid_request(request: Request, error: Exception) -> Response:
    return error_response(400, f"standin: invalid request: {error}")


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """`app` on a free loopback port, in a thread, for the length of the block."""
    # Bound here on port 0, so no other process can take the port between choice and bind.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=f"standins-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the stand-ins did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
