"""The page's app exactly as the plugin hands it to Airflow, behind Airflow's own authorization
(`requires_access_dag`, the auth manager's answer): a stranger gets 401 on every route, a
logged-in user the auth manager refuses the quotestream DAGs 403, a permitted user the page.

The auth manager is Airflow's SimpleAuthManager with tokens it signs itself. A user without a
role is refused by it as it stands; `outsider` is refused by a subclass that keeps the
quotestream DAGs from that one user, as a FAB role without those DAGs would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from fastapi.testclient import TestClient

from quotestream.entrypoints import airflow_plugin
from tests.support.cockpit import in_memory_cockpit

pytestmark = pytest.mark.integration

ROUTES = ["/", "/api/figures"]


class QuotestreamDagsOutOfReach(SimpleAuthManager):
    """SimpleAuthManager, except that `outsider` may not read the quotestream DAGs."""

    def is_authorized_dag(self, *, method: Any, user: Any, **rest: Any) -> bool:
        details = rest.get("details")
        if user.username == "outsider" and details and details.id.startswith("quotestream_"):
            return False
        allowed: bool = super().is_authorized_dag(method=method, user=user, **rest)
        return allowed


@pytest.fixture
def auth_manager(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The API server's auth manager, as Airflow creates it from its configuration."""
    from airflow.api_fastapi import app as airflow_app

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.QuotestreamDagsOutOfReach")
    monkeypatch.setenv(
        "AIRFLOW__API_AUTH__JWT_SECRET", "a-test-signing-secret-not-a-real-one-" + "x" * 40
    )
    airflow_app.purge_cached_app()
    try:
        manager = airflow_app.create_auth_manager()
        assert isinstance(manager, QuotestreamDagsOutOfReach)
        yield manager
    finally:
        airflow_app.purge_cached_app()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(airflow_plugin, "_build_service", in_memory_cockpit)
    [mounted] = airflow_plugin.QuotestreamCockpit().fastapi_apps
    assert mounted["url_prefix"] == "/quotestream"
    return TestClient(mounted["app"])


def token(manager: Any, username: str, role: str | None) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    signed: str = manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role))
    return signed


@pytest.mark.parametrize("path", ROUTES)
def test_a_stranger_is_asked_to_log_in(auth_manager: Any, client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(("username", "role"), [("outsider", "admin"), ("no-role", None)])
def test_a_user_the_auth_manager_refuses_the_dags_is_forbidden(
    auth_manager: Any, client: TestClient, path: str, username: str, role: str | None
) -> None:
    # The session cookie, as the browser sends it.
    client.cookies.set("_token", token(auth_manager, username, role))
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_a_user_who_may_read_the_dags_gets_the_page(
    auth_manager: Any, client: TestClient, path: str, role: str
) -> None:
    bearer = {"Authorization": f"Bearer {token(auth_manager, 'operator', role)}"}
    answer = client.get(path, headers=bearer)
    assert answer.status_code == 200
    if path == "/api/figures":
        assert answer.json()["pairs"] == ["USD-BRL", "EUR-USD"]


def test_the_page_asks_about_each_of_its_dags(auth_manager: Any, client: TestClient) -> None:
    asked: list[tuple[str, str]] = []
    decide = auth_manager.is_authorized_dag

    def recording(**question: Any) -> bool:
        asked.append((question["method"], question["details"].id))
        allowed: bool = decide(**question)
        return allowed

    auth_manager.is_authorized_dag = recording
    bearer = {"Authorization": f"Bearer {token(auth_manager, 'operator', 'viewer')}"}
    assert client.get("/api/figures", headers=bearer).status_code == 200
    assert asked == [("GET", dag) for dag in airflow_plugin.PAGE_DAGS]
