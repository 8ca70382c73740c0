"""Which credentials the Google adapters get, and where they send them."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.auth import impersonated_credentials

from quotestream import bootstrap
from quotestream.adapters.gcp.access import in_airflow_task
from quotestream.settings import Settings
from tests.support.standins.oauth import key_file

pytestmark = pytest.mark.unit


def test_outside_airflow_the_chain_is_impersonated_from_application_default_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adc = key_file(tmp_path / "adc.json", "http://127.0.0.1:9/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", adc)
    chain = ("hop@p.iam.gserviceaccount.com", "quotestream-composer@p.iam.gserviceaccount.com")
    settings = Settings(
        target="gcp",
        project="p",
        impersonation_chains={"dataflow": chain},
        google_api_endpoints={"dataflow": "https://dataflow-psc.p.googleapis.com"},
    )

    assert not in_airflow_task()
    dataflow = bootstrap.google_access(settings, "dataflow")
    assert isinstance(dataflow.credentials, impersonated_credentials.Credentials)
    assert dataflow.credentials.service_account_email == chain[-1]
    assert dataflow.credentials._delegates == [chain[0]]
    assert dataflow.client_kwargs()["client_options"] == {
        "api_endpoint": "https://dataflow-psc.p.googleapis.com"
    }
    # Without a chain: Application Default Credentials, found by each client itself.
    assert bootstrap.google_access(settings, "run").credentials is None
    assert bootstrap.google_access(settings, "run").client_kwargs()["client_options"] == {}


def test_locally_every_api_is_anonymous_and_bigquery_goes_to_its_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9050")
    access = bootstrap.google_access(Settings(target="local"), "bigquery")
    assert isinstance(access.credentials, AnonymousCredentials)
    assert access.endpoint == "http://127.0.0.1:9050"
