"""What all the REST stand-ins speak: Google's JSON error shape, enums as numbers or names,
RFC 3339 times, and a path segment that stops at ":" (custom verbs such as `:getIamPolicy`)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

# The canonical code of each HTTP status, as Google's error bodies name it.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """Raised by the stand-ins' handlers; the app answers it in Google's error shape, which
    google.api_core maps to its exception classes by the HTTP code alone."""

    def __init__(
        self, code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = details or []


def error_response(
    code: int,
    message: str,
    status: str | None = None,
    retry_after_s: float | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or STATUS_NAMES.get(code, ""),
    }
    if details:
        error["details"] = details
    headers = {} if retry_after_s is None else {"Retry-After": f"{retry_after_s:g}"}
    return JSONResponse({"error": error}, status_code=code, headers=headers)


def enum_name(enum_type: type[enum.Enum], value: object) -> str:
    """The generated REST clients send `enum-encoding=int`; people and docs use names."""
    try:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return enum_type(int(value)).name
        return enum_type[str(value)].name
    except (KeyError, ValueError):
        raise ApiError(400, "INVALID_ARGUMENT", f"{value!r} is no {enum_type.__name__}") from None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


class _Segment(Convertor[str]):
    """`{name:segment}`: one resource id, which Starlette's default `[^/]+` would let run on
    into a custom verb (`services/api:getIamPolicy`)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _Segment())
