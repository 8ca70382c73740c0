"""The Google API stand-ins as fixtures (registered by tests/conftest.py): each started once
per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.standins.google_apis import GoogleApis, serve
from tests.support.standins.monitoring import MonitoringStandIn


@pytest.fixture(scope="session")
def google_apis_server() -> Iterator[GoogleApis]:
    apis = GoogleApis()
    with serve(apis.app) as url:
        apis.url = url
        yield apis


@pytest.fixture(scope="session")
def monitoring_server(google_apis_server: GoogleApis) -> Iterator[MonitoringStandIn]:
    """Sharing the REST stand-ins' recorder and authority: one place for every call and
    every fault, one project's grants."""
    stand_in = MonitoringStandIn(google_apis_server.recorder, google_apis_server.authority)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def google_apis(google_apis_server: GoogleApis) -> GoogleApis:
    google_apis_server.reset()
    return google_apis_server


@pytest.fixture
def monitoring(monitoring_server: MonitoringStandIn) -> MonitoringStandIn:
    monitoring_server.reset()
    return monitoring_server


@pytest.fixture
def loopback_only_google_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth looks a service account's allowed locations up at Google's IAM credentials
    host, in the background, once it holds a token; no stand-in can answer for that host, and
    nothing in the tests may leave loopback."""
    import google.auth.credentials

    monkeypatch.setattr(
        google.auth.credentials.CredentialsWithRegionalAccessBoundary,
        "_is_regional_access_boundary_lookup_required",
        lambda _: False,
    )
