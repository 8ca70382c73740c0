"""From an empty Google Cloud project to both jobs running, as a user of the docs goes: `gcp
bootstrap`, `release`, then `quotestream_provision`, `quotestream_deploy_api` and
`quotestream_streaming`, on stand-ins that hold every call to Google's rules (tests/gcp explains
the stand-in tools). The DAGs run with the Composer environment's variables as the bootstrap
and the release set them, and as its account, with only the roles the bootstrap granted; the
jobs run from the specs the release wrote, with the images it pushed. The calls on the wire are
those the dry runs printed. Without the bootstrap's Monitoring grant, provisioning stops at
Google's 403."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.adapters.gcp.monitoring_alerts import MonitoringRefused
from quotestream.entrypoints.gcp_bootstrap import API_URL_UNKNOWN, Layout
from quotestream.settings import Settings
from tests.support.dag_runs import states
from tests.support.local_runs import api_serving
from tests.support.standins.dataflow import launch_parameters
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.monitoring import MonitoringStandIn
from tests.support.standins.oauth import service_account_info
from tests.support.standins.project import (
    REGION,
    Quotestream,
    bootstrap_args,
    release_args,
)

pytestmark = pytest.mark.integration

LOAD, EXTRACT = "quotestream-load", "quotestream-extract"
READ_ONLY = (" describe ", " get-iam-policy ", " list ", " show ", "print-access-token")


def planned(printed: str) -> list[list[str]]:
    """The commands a dry run printed, as words (a tool by its name, wherever it lives)."""
    commands = []
    for line in printed.splitlines():
        if line.startswith("would run"):
            words = shlex.split(line.split(": ", 1)[1])
            commands.append([Path(words[0]).name, *words[1:]])
    return commands


def on_the_wire(apis: GoogleApis, since: int) -> list[list[str]]:
    """The calls since the `since`-th that changed something."""
    lines = [call.line for call in apis.cli.calls[since:]]
    return [shlex.split(line) for line in lines if not any(r in line for r in READ_ONLY)]


def bootstrap_as_planned(quotestream: Quotestream, apis: GoogleApis, project: str) -> None:
    plan = planned(quotestream(*bootstrap_args(project, "--dry-run")))
    since = len(apis.cli.calls)
    quotestream(*bootstrap_args(project))
    service = apis.run.services[f"projects/{project}/locations/{REGION}/services/quotestream-api"]
    made = [
        [word.replace(service["uri"], API_URL_UNKNOWN) for word in words]
        for words in on_the_wire(apis, since)
    ]
    assert made == plan, "the bootstrap's calls are the ones its dry run printed"


def release_as_planned(quotestream: Quotestream, apis: GoogleApis, project: str) -> None:
    plan = planned(quotestream(*release_args(project, "--tag=r1", "--dry-run")))
    since = len(apis.cli.calls)
    quotestream(*release_args(project, "--tag=r1"))
    # The pip.conf copy is a temporary file the dry run describes in words.
    made = [words for words in on_the_wire(apis, since) if words[1:3] != ["storage", "cp"]]
    assert made == plan, "the release's calls are the ones its dry run printed"


@pytest.fixture
def as_composer(
    project: str,
    google_apis: GoogleApis,
    monitoring: MonitoringStandIn,
    airflow_db: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    loopback_only_google_auth: None,
) -> Callable[[], Settings]:
    """Sets this process up as the Composer environment runs its tasks, with its variables
    as they are when called, as its account (in a task, through the connection; outside,
    as Application Default Credentials); the settings they make."""
    layout = Layout(Settings(target="gcp", project=project, region=REGION), "quotestream")
    key = service_account_info(f"{google_apis.url}/token", layout.composer_account, project)
    key_path = tmp_path / "composer-key.json"
    key_path.write_text(json.dumps(key))
    connection = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(key)}}
    endpoints = {api: google_apis.url for api in ("dataflow", "run", "secretmanager")}
    endpoints["monitoring"] = f"http://{monitoring.address}"
    endpoints["bigquery"] = os.environ["BIGQUERY_EMULATOR_HOST"]

    def environment() -> Settings:
        for name, value in {
            **google_apis.cli.environments["quotestream"].variables,
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(connection),
            "GOOGLE_APPLICATION_CREDENTIALS": str(key_path),
            # The stand-ins' addresses, which Composer would not need: Google's are the default.
            "QUOTESTREAM_GOOGLE_API_ENDPOINTS": json.dumps(endpoints),
        }.items():
            monkeypatch.setenv(name, value)
        return Settings()

    return environment


@pytest.fixture
def api_of_project(logs_dir: Path, project: str) -> Iterator[str]:
    """A real API process to serve as the service (the image the deploy names is not run)."""
    env = {"QUOTESTREAM_TARGET": "local", "QUOTESTREAM_PROJECT": project}
    with api_serving(logs_dir, env) as url:
        yield url


def test_from_an_empty_project_to_both_jobs_running(
    dagbag: Any,
    project: str,
    quotestream: Quotestream,
    as_composer: Callable[[], Settings],
    api_of_project: str,
    google_apis: GoogleApis,
    monitoring: MonitoringStandIn,
) -> None:
    bootstrap_as_planned(quotestream, google_apis, project)
    release_as_planned(quotestream, google_apis, project)
    settings = as_composer()
    # From the deploy on, the service's URL answers with a real API process.
    google_apis.run.service_uri = api_of_project
    google_apis.recorder.clear()

    assert states(dagbag.get_dag("quotestream_provision").test()) == {"provision": "success"}
    assert len(monitoring.alerting.policies) == 9
    run = dagbag.get_dag("quotestream_deploy_api").test()
    assert states(run) == {"deploy": "success", "smoke_test": "success"}
    name = f"projects/{settings.project}/locations/{REGION}/services/quotestream-api"
    containers = google_apis.run.services[name]["template"]["containers"]
    assert containers[0]["image"] == settings.api_image
    assert set(states(dagbag.get_dag("quotestream_streaming").test()).values()) == {"success"}

    registry = f"{REGION}-docker.pkg.dev/{settings.project}/quotestream"
    for job_name, kind in ((LOAD, "load"), (EXTRACT, "extract")):
        (job,) = google_apis.dataflow.jobs_named(job_name)
        image = f"{registry}/{kind}:r1"
        assert job["currentState"] == "JOB_STATE_RUNNING", job.get("failure")
        assert job["launcherImage"] == job["workerImage"] == image
        assert google_apis.registry.digest_of(image) == google_apis.cli.built[image], "pushed"
        assert job["serviceAccount"] == settings.dataflow_service_account
    (load,) = [p for p in launch_parameters(google_apis.recorder) if p["jobName"] == LOAD]
    assert load["containerSpecGcsPath"] == (
        f"gs://{settings.project}-quotestream-templates/r1/load_quotes.json"
    )
    # Every call the DAGs made to a checked API was the Composer account's.
    composer = f"serviceAccount:quotestream-composer@{settings.project}.iam.gserviceaccount.com"
    checked = [c for c in google_apis.recorder.calls if c.api not in ("oauth", "cli")]
    assert {google_apis.authority.caller(c.authorization) for c in checked} == {composer}
    # None of them set IAM: the bootstrap granted everything once.
    assert not [c for c in checked if "IamPolicy" in c.path + c.method]


@pytest.mark.parametrize(
    ("role", "refused"),
    [
        ("roles/monitoring.alertPolicyEditor", "monitoring.alertPolicies.list"),
        ("roles/monitoring.dashboardEditor", "monitoring.dashboards.list"),
    ],
)
def test_without_a_monitoring_grant_provisioning_stops_at_googles_403(
    project: str,
    quotestream: Quotestream,
    as_composer: Callable[[], Settings],
    google_apis: GoogleApis,
    monitoring: MonitoringStandIn,
    role: str,
    refused: str,
) -> None:
    """What `quotestream_provision`'s task runs, as the same account, without one of the roles
    the bootstrap grants (the DAG itself would retry it for minutes before failing)."""
    quotestream(*bootstrap_args(project))
    settings = as_composer()
    composer = f"serviceAccount:quotestream-composer@{project}.iam.gserviceaccount.com"
    google_apis.grants.revoke(f"projects/{project}", role, composer)

    denied = f"403 Permission '{refused}' denied on resource 'projects/{project}'"
    with pytest.raises(MonitoringRefused, match=re.escape(denied)):
        bootstrap.build_provision_service(settings).run()

    if role == "roles/monitoring.alertPolicyEditor":
        assert monitoring.alerting.policies == {}, "not one alert policy"
    else:
        assert len(monitoring.alerting.policies) == 9
        assert monitoring.alerting.dashboards == {}
