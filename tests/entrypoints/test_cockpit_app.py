"""The cockpit app as Airflow mounts it: the page, its JSON, the guard on every route, and
what it answers when the pipeline cannot be read."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, HTTPException, Request
from fastapi.testclient import TestClient

from quotestream.entrypoints.cockpit import cockpit_app
from quotestream.services.cockpit import CockpitService
from quotestream.settings import Settings
from tests.support.cockpit import in_memory_cockpit
from tests.support.secrets import MARKER, REFUSED_SECRETS

pytestmark = pytest.mark.unit


def only_with_a_session(request: Request) -> None:
    if request.cookies.get("_token") != "good":
        raise HTTPException(401, "Not authenticated")


@pytest.fixture
def client() -> TestClient:
    return TestClient(
        cockpit_app(in_memory_cockpit, [Depends(only_with_a_session)]), cookies={"_token": "good"}
    )


def test_the_page_is_html_that_reads_the_figures_relative_to_itself(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Quotes pipeline</h1>" in page.text
    assert 'base + "api/figures"' in page.text
    assert '<span id="stale"' in page.text
    assert "f.stale ?" in page.text


def test_the_figures_for_scripts(client: TestClient) -> None:
    figures = client.get("/api/figures", params={"pair": "EUR-USD"}).json()
    assert figures["pairs"] == ["USD-BRL", "EUR-USD"]
    assert figures["bars_pair"] == "EUR-USD"
    assert figures["rows_last_hour"] == 1
    assert [p["pair"] for p in figures["freshness"] if not p["quiet"]] == ["USD-BRL"]
    assert figures["warehouse_error"] is None
    assert (figures["stale"], figures["reading_since_ms"]) == (False, None)


def test_an_unknown_pair_is_refused_with_the_configured_ones(client: TestClient) -> None:
    answer = client.get("/api/figures", params={"pair": "XXX-YYY"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == "unknown pair 'XXX-YYY': configured are USD-BRL, EUR-USD"


@pytest.mark.parametrize("path", ["/", "/api/figures"])
def test_every_route_is_behind_the_guard(path: str) -> None:
    client = TestClient(cockpit_app(in_memory_cockpit, [Depends(only_with_a_session)]))
    assert client.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_no_schema_or_docs_route_bypasses_the_guard(path: str) -> None:
    assert (
        TestClient(cockpit_app(in_memory_cockpit, [Depends(only_with_a_session)]))
        .get(path)
        .status_code
        == 404
    )


def test_a_service_that_cannot_be_built_says_why_and_is_tried_again() -> None:
    attempts: list[Any] = []

    def build() -> CockpitService:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("target is local but BIGQUERY_EMULATOR_HOST is not set")
        return in_memory_cockpit()

    client = TestClient(cockpit_app(build))
    first = client.get("/api/figures")
    assert first.status_code == 503
    assert first.json()["detail"] == (
        "the pipeline cannot be read: target is local but BIGQUERY_EMULATOR_HOST is not set"
    )
    assert client.get("/api/figures").status_code == 200
    assert client.get("/api/figures").status_code == 200
    assert len(attempts) == 2  # built once it could be, then kept


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, values in REFUSED_SECRETS.items() for value in values],
)
def test_settings_refused_for_a_secret_say_so_without_the_secret(name: str, value: object) -> None:
    def build() -> CockpitService:
        Settings(**{name: value})
        raise AssertionError("the settings were accepted")

    answer = TestClient(cockpit_app(build)).get("/api/figures")
    assert answer.status_code == 503
    assert name in answer.json()["detail"]
    assert MARKER not in answer.text
