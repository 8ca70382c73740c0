"""The OpenAPI document says what the API really answers: every error as the problem details
the handlers send (`application/problem+json`, not FastAPI's validation-error schema), and
the pairs this deployment serves as the values `pair` and `pairs` take."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from quotestream.domain.pairs import PAIR_CATALOG
from quotestream_api.problems import PROBLEM_JSON

PROBLEM_SCHEMA = {
    "title": "ProblemDetails",
    "description": "RFC 9457 problem details; `reason` is machine-readable",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "reason": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}},
            },
        },
    },
}


def describe(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # The settings are read at startup; before it, every pair the API knows.
            settings = getattr(app.state, "settings", None)
            pairs = settings.pairs if settings is not None else tuple(PAIR_CATALOG)
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=app.description
            )
            _problems(document)
            _pairs(document, pairs)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problems(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["ProblemDetails"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    for operation in _operations(document):
        for status, response in operation.get("responses", {}).items():
            if status.isdigit() and int(status) >= 400:
                response["content"] = problem


def _pairs(document: dict[str, Any], pairs: Sequence[str]) -> None:
    one = "|".join(re.escape(pair) for pair in pairs)
    for operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            if parameter["name"] == "pair":
                schema["enum"] = list(pairs)
            elif parameter["name"] == "pairs":
                # Optional: FastAPI states it as anyOf string/null.
                for choice in schema.get("anyOf", [schema]):
                    if choice.get("type") == "string":
                        # Empty means every pair, as omitted does.
                        choice["pattern"] = f"^(({one})(,({one}))*)?$"


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for path in document["paths"].values() for operation in path.values()]
