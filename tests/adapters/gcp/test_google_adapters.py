"""The Dataflow, Cloud Run, Secret Manager and Monitoring adapters through the real Google
clients, over their wire format, against the local stand-ins: what reaches the wire is checked
against Google's public REST reference (field names, requested states, masks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import Conflict, NotFound, TooManyRequests
from google.auth.credentials import AnonymousCredentials

from quotestream import bootstrap
from quotestream.adapters.gcp.access import ApiAccess
from quotestream.adapters.gcp.cloud_run import CloudRunDeployer
from quotestream.adapters.gcp.dataflow import DataflowJobRunner, LaunchRefused
from quotestream.adapters.gcp.monitoring import CloudMonitoringBacklog
from quotestream.ports.jobs import InPlaceUpdate, JobState, StopMode
from quotestream.ports.resources import Outcome
from quotestream.settings import Settings
from tests.conftest import REPO
from tests.support.standins.dataflow import (
    flex_template_spec,
    launch_parameters,
    requested_state,
)
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.monitoring import MonitoringStandIn
from tests.support.standins.oauth import key_file

pytestmark = pytest.mark.integration

LOAD = "quotestream-load"
SERVICE = "projects/proj/locations/us-central1/services/quotestream-api"


def access(url: str) -> ApiAccess:
    return ApiAccess(AnonymousCredentials(), url)  # type: ignore[no-untyped-call]


def put_spec(apis: GoogleApis, bucket: str, name: str, kind: str) -> None:
    """The spec a release writes for `kind`, its metadata the repository's."""
    metadata = json.loads((REPO / "beam_pipelines" / f"{kind}_quotes.metadata.json").read_text())
    if bucket not in apis.storage.buckets:
        apis.storage.create_bucket(bucket, "proj")
    spec = flex_template_spec(f"r/quotestream-{kind}:1", metadata)
    apis.storage.put(bucket, name, json.dumps(spec).encode(), "application/json")


@pytest.fixture
def load_spec(google_apis: GoogleApis) -> None:
    put_spec(google_apis, "b", "t/load_quotes.json", "load")


def runner(apis: GoogleApis, cannot_launch: str | None = None) -> DataflowJobRunner:
    return DataflowJobRunner(
        "proj",
        "us-central1",
        {"load": "gs://b/t/load_quotes.json"},
        {"settings": "{}"},
        {"temp_location": "gs://b/tmp", "sdk_container_image": "r/quotestream-{pipeline}:1"},
        access=access(apis.url),
        cannot_launch=cannot_launch,
    )


def launches(apis: GoogleApis) -> list[dict[str, Any]]:
    return launch_parameters(apis.recorder)


def test_find_follows_the_pages_and_takes_the_newest_job_of_the_name(
    google_apis: GoogleApis,
) -> None:
    for state in ("JOB_STATE_CANCELLED", "JOB_STATE_FAILED", "JOB_STATE_DRAINING"):
        google_apis.dataflow.add_job(LOAD, state)
    google_apis.dataflow.add_job("other", "JOB_STATE_RUNNING")
    newest = google_apis.dataflow.jobs_named(LOAD)[-1]["id"]

    found = runner(google_apis).find(LOAD)

    assert (found.job_id, found.state) == (newest, JobState.STOPPING)
    lists = google_apis.recorder.of("dataflow", "GET")
    assert len(lists) == 2, "four jobs in pages of two"
    assert lists[0].path == "/v1b3/projects/proj/locations/us-central1/jobs"
    assert lists[0].query["filter"] in (["ALL"], ["1"])  # Filter.ALL, by name or number
    assert runner(google_apis).find("absent") is None


def test_a_launch_sends_the_flex_template_and_refuses_a_second_copy(
    google_apis: GoogleApis, load_spec: None
) -> None:
    launched = runner(google_apis).launch(LOAD, "load", ["--allowed_lateness_s=60"])

    call = google_apis.recorder.of("dataflow", "POST")[0]
    assert call.path == "/v1b3/projects/proj/locations/us-central1/flexTemplates:launch"
    assert call.body["launchParameter"] == {
        "jobName": LOAD,
        "containerSpecGcsPath": "gs://b/t/load_quotes.json",
        "parameters": {"settings": "{}", "allowed_lateness_s": "60"},
        "environment": {"tempLocation": "gs://b/tmp", "sdkContainerImage": "r/quotestream-load:1"},
    }
    assert google_apis.dataflow.jobs_named(LOAD)[-1]["id"] == launched.job_id
    with pytest.raises(RuntimeError, match="already running"):
        runner(google_apis).launch(LOAD, "load", [])
    assert len(launches(google_apis)) == 1


@pytest.mark.parametrize(
    ("mode", "requested", "passing", "final"),
    [
        (StopMode.DRAIN, "JOB_STATE_DRAINED", "JOB_STATE_DRAINING", "JOB_STATE_DRAINED"),
        (StopMode.CANCEL, "JOB_STATE_CANCELLED", "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"),
    ],
)
def test_a_stop_requests_drain_or_cancel_and_the_state_machine_is_followed(
    google_apis: GoogleApis, mode: StopMode, requested: str, passing: str, final: str
) -> None:
    job = google_apis.dataflow.add_job(LOAD)
    jobs = runner(google_apis)

    jobs.stop(LOAD, mode)

    (update,) = google_apis.recorder.of("dataflow", "PUT")
    assert update.path == f"/v1b3/projects/proj/locations/us-central1/jobs/{job['id']}"
    assert requested_state(update.body) == requested
    # The reference: a state request and an update mask together are an error.
    assert "updateMask" not in update.query
    seen = [jobs.find(LOAD).detail for _ in range(3)]
    assert seen[0].endswith(passing)
    assert seen[-1].endswith(final)
    assert jobs.find(LOAD).state in (JobState.DONE, JobState.CANCELLED)
    jobs.stop(LOAD, mode)  # a finished job is left alone
    assert len(google_apis.recorder.of("dataflow", "PUT")) == 1


def test_an_update_launch_replaces_the_running_job_with_its_renamed_steps(
    google_apis: GoogleApis, load_spec: None
) -> None:
    old = google_apis.dataflow.add_job(LOAD)
    jobs = runner(google_apis)

    new = jobs.replace(LOAD, "load", InPlaceUpdate(5, {"Bars/Window": "Bars/FixedWindows"}))

    (parameter,) = launches(google_apis)
    assert parameter["update"] is True
    assert parameter["transformNameMappings"] == {"Bars/Window": "Bars/FixedWindows"}
    assert parameter["jobName"] == LOAD
    first, second = google_apis.dataflow.jobs_named(LOAD)
    assert (first["id"], first["currentState"]) == (old["id"], "JOB_STATE_UPDATED")
    assert first["replacedByJobId"] == second["id"] == new.job_id
    assert jobs.find(LOAD).state is JobState.RUNNING


def test_an_update_dataflow_finds_incompatible_fails_and_leaves_the_job_running(
    google_apis: GoogleApis, load_spec: None
) -> None:
    old = google_apis.dataflow.add_job(LOAD)
    google_apis.dataflow.update_incompatible = True
    jobs = runner(google_apis)

    with pytest.raises(RuntimeError, match=f"refused the update .* {old['id']} keeps running"):
        jobs.replace(LOAD, "load", InPlaceUpdate(5))

    assert [j["currentState"] for j in google_apis.dataflow.jobs_named(LOAD)] == [
        "JOB_STATE_RUNNING",
        "JOB_STATE_FAILED",
    ]


def test_a_launch_refused_here_sends_nothing_and_one_refused_by_dataflow_surfaces(
    google_apis: GoogleApis, load_spec: None
) -> None:
    with pytest.raises(LaunchRefused, match="QUOTESTREAM_DATAFLOW_IMAGE"):
        runner(google_apis, "needs QUOTESTREAM_DATAFLOW_IMAGE").launch(LOAD, "load", [])
    assert launches(google_apis) == []
    # Another launcher won the race for the name between our look-up and our launch.
    google_apis.recorder.fail("dataflow", "POST", "flexTemplates:launch", 409)
    with pytest.raises(Conflict):
        runner(google_apis).launch(LOAD, "load", [])
    google_apis.recorder.fail("dataflow", "POST", "flexTemplates:launch", 429)
    with pytest.raises(TooManyRequests):
        runner(google_apis).launch(LOAD, "load", [])
    assert google_apis.dataflow.jobs_named(LOAD) == []


def deployer(apis: GoogleApis, **overrides: Any) -> CloudRunDeployer:
    arguments: dict[str, Any] = {
        "api_key_secret": "relay-key",
        "service_account": "quotestream-api@proj.iam.gserviceaccount.com",
        "access": access(apis.url),
        "poll_s": 0.01,
        "secrets_access": access(apis.url),
        **overrides,
    }
    return CloudRunDeployer(
        "proj",
        "us-central1",
        "quotestream-api",
        "img:1",
        {"QUOTESTREAM_TARGET": "gcp"},
        **arguments,
    )


def test_a_deploy_creates_then_updates_the_private_service(google_apis: GoogleApis) -> None:
    google_apis.secrets.add_version("relay-key", b"k" * 32)

    created = deployer(google_apis).deploy()
    updated = deployer(google_apis).deploy()

    assert [(r.kind, r.outcome) for r in created] == [("cloud run service", Outcome.CREATED)]
    assert [r.outcome for r in updated] == [Outcome.UPDATED]
    create = google_apis.recorder.of("run", "POST", "/services")[0]
    assert create.path == "/v2/projects/proj/locations/us-central1/services"
    assert create.query["serviceId"] == ["quotestream-api"]
    template = create.body["template"]
    assert template["serviceAccount"] == "quotestream-api@proj.iam.gserviceaccount.com"
    container = template["containers"][0]
    assert container["image"] == "img:1"
    key = next(e for e in container["env"] if e["name"] == "QUOTESTREAM_API_KEY")
    # The relay key is mounted from Secret Manager, never sent as a value.
    assert key == {
        "name": "QUOTESTREAM_API_KEY",
        "valueSource": {"secretKeyRef": {"secret": "relay-key", "version": "latest"}},
    }
    assert not create.body.get("invokerIamDisabled")
    (patch,) = google_apis.recorder.of("run", "PATCH")
    assert patch.path == f"/v2/{SERVICE}"
    assert google_apis.run.services[SERVICE]["generation"] == "2"
    # Who may invoke it is the bootstrap's to grant: the deploy never touches the service's IAM.
    assert not [c for c in google_apis.recorder.of("run") if "IamPolicy" in c.path]
    # It waits on the service, not on the operation (run.operations.get is project-wide).
    assert not google_apis.recorder.of("run", "GET", "/operations/")
    assert deployer(google_apis).url() == "https://quotestream-api-standin.a.run.app"


def test_a_deploy_waits_while_the_service_reconciles(google_apis: GoogleApis) -> None:
    google_apis.secrets.add_version("relay-key", b"k" * 32)
    google_apis.run.operation_reads = 4

    deployer(google_apis).deploy()

    reads = google_apis.recorder.of("run", "GET", "/services/quotestream-api")
    assert len(reads) == 1 + 4, "a look-up, then reads until the service settled"


@pytest.mark.parametrize(
    ("state", "message"), [(None, "does not exist"), ("DISABLED", "is DISABLED")]
)
def test_a_deploy_without_an_enabled_relay_key_says_so_and_deploys_nothing(
    google_apis: GoogleApis, state: str | None, message: str
) -> None:
    if state:
        google_apis.secrets.add_version("relay-key", b"k" * 32, state=state)
    with pytest.raises(RuntimeError, match=message):
        deployer(google_apis).deploy()
    (check,) = google_apis.recorder.of("secretmanager")
    assert check.path == "/v1/projects/proj/secrets/relay-key/versions/latest"
    assert google_apis.recorder.of("run") == []


def test_a_revision_that_fails_is_reported_by_the_deploy_and_by_url(
    google_apis: GoogleApis,
) -> None:
    google_apis.secrets.add_version("relay-key", b"k" * 32)
    google_apis.run.revision_fails = "container failed to start on port 8080"
    google_apis.run.operation_reads = 2
    with pytest.raises(RuntimeError, match=r"did not become ready: .*failed to start on port 8080"):
        deployer(google_apis).deploy()
    with pytest.raises(RuntimeError, match=r"is not ready .*failed to start on port 8080"):
        deployer(google_apis).url()


def test_the_backlog_comes_from_the_newest_monitoring_points(monitoring: MonitoringStandIn) -> None:
    import time

    now = int(time.time())
    undelivered = "pubsub.googleapis.com/subscription/num_undelivered_messages"
    oldest = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
    monitoring.set_points(undelivered, "quotes-load", [(now - 120, 9), (now - 60, 42)])
    monitoring.set_points(oldest, "quotes-load", [(now - 60, 17)])
    monitoring.set_points(oldest, "other", [(now - 60, 999)])
    probe = CloudMonitoringBacklog("proj", access=access(f"http://{monitoring.address}"))

    assert probe.backlog("quotes-load") == (42, 17.0)
    assert probe.backlog("absent") == (None, None)
    request = monitoring.recorder.of("monitoring")[0].body
    assert request["name"] == "projects/proj"
    assert request["filter"] == (
        f'metric.type = "{undelivered}" AND resource.labels.subscription_id = "quotes-load"'
    )
    # The client retries what is transient by itself; anything else reaches the health check.
    calls = len(monitoring.recorder.of("monitoring"))
    monitoring.recorder.fail("monitoring", "ListTimeSeries", ".*", 503, times=2)
    assert probe.backlog("quotes-load") == (42, 17.0)
    assert len(monitoring.recorder.of("monitoring")) == calls + 4
    monitoring.recorder.fail("monitoring", "ListTimeSeries", ".*", 404)
    with pytest.raises(NotFound):
        probe.backlog("quotes-load")


@pytest.fixture
def default_credentials(
    google_apis: GoogleApis,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    loopback_only_google_auth: None,
) -> None:
    """Application Default Credentials of a stand-in service account, as the DAGs have them."""
    adc = key_file(tmp_path / "adc.json", f"{google_apis.url}/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", adc)


def test_a_gcp_job_runner_stops_jobs_without_the_launch_settings_but_refuses_to_launch(
    google_apis: GoogleApis, default_credentials: None
) -> None:
    """Built by bootstrap as the DAGs build it, with Application Default Credentials."""
    google_apis.dataflow.add_job(LOAD)
    settings = Settings(
        target="gcp",
        project="proj",
        api_url="http://127.0.0.1:8080",
        dataflow_templates="gs://b/templates",
        google_api_endpoints={"dataflow": google_apis.url},
    )
    jobs = bootstrap.build_job_runner(settings)

    jobs.stop(LOAD, StopMode.CANCEL)
    with pytest.raises(LaunchRefused) as refused:
        jobs.launch("quotestream-extract", "extract", [])

    assert (
        "QUOTESTREAM_DATAFLOW_TEMP_LOCATION, QUOTESTREAM_DATAFLOW_IMAGE, "
        "QUOTESTREAM_DATAFLOW_SERVICE_ACCOUNT"
    ) in str(refused.value)
    assert "QUOTESTREAM_API_URL" in str(refused.value)
    assert len(google_apis.recorder.of("dataflow", "PUT")) == 1
    assert launches(google_apis) == []


def test_a_gcp_launch_sends_the_workers_network_size_and_account_from_the_settings(
    google_apis: GoogleApis, default_credentials: None
) -> None:
    put_spec(google_apis, "b", "templates/r1/load_quotes.json", "load")
    settings = Settings(
        target="gcp",
        project="proj",
        api_url="https://quotestream-api-standin.a.run.app",
        dataflow_templates="gs://b/templates/r1",
        dataflow_temp_location="gs://staging/tmp",
        dataflow_image="r/quotestream-{pipeline}:1",
        dataflow_service_account="quotestream-dataflow@proj.iam.gserviceaccount.com",
        dataflow_subnetwork="regions/us-central1/subnetworks/quotestream",
        dataflow_max_workers=2,
        dataflow_machine_type="n2-standard-2",
        google_api_endpoints={"dataflow": google_apis.url},
    )

    bootstrap.build_job_runner(settings).launch(LOAD, "load", [])

    (launch,) = launches(google_apis)
    assert launch["environment"] == {
        "tempLocation": "gs://staging/tmp",
        "enableStreamingEngine": True,
        "sdkContainerImage": "r/quotestream-load:1",
        "serviceAccountEmail": "quotestream-dataflow@proj.iam.gserviceaccount.com",
        "maxWorkers": 2,
        "machineType": "n2-standard-2",
        "subnetwork": "regions/us-central1/subnetworks/quotestream",
    }
    assert "network" not in launch["environment"], "a subnetwork alone names the network"


def test_a_gcp_deploy_needs_the_apis_own_account() -> None:
    """Without it Cloud Run would run the API as the default Compute Engine account."""
    settings = Settings(target="gcp", project="proj", api_image="img:1")
    with pytest.raises(bootstrap.ConfigurationError, match="QUOTESTREAM_API_SERVICE_ACCOUNT"):
        bootstrap.build_deployer(settings)
