"""The Google API stand-ins, driven through the real client libraries over their wire format.
(Cloud Storage, Dataflow's specs and the permissions have files of their own.)"""

from __future__ import annotations

import json
import time
from typing import Any

import google_crc32c
import grpc
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import Request
from google.cloud import dataflow_v1beta3 as dataflow
from google.cloud import monitoring_v3, run_v2, secretmanager_v1
from google.cloud.monitoring_v3.services.metric_service import transports
from google.oauth2 import service_account

from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.monitoring import MonitoringStandIn
from tests.support.standins.oauth import JWT_BEARER, claims_of, service_account_info

pytestmark = pytest.mark.integration

PROJECT, REGION = "standin-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
SERVICE = f"{PARENT}/services/api"
S = dataflow.JobState  # as the adapter names it


def rest(client_type: Any, apis: GoogleApis) -> Any:
    endpoint = {"api_endpoint": apis.url}
    return client_type(
        transport="rest", credentials=AnonymousCredentials(), client_options=endpoint
    )


SPEC = "gs://t/load.json"


def put_spec(apis: GoogleApis, path: str = SPEC, *parameters: str) -> None:
    """A flex-template spec whose metadata declares `parameters`, all optional."""
    bucket, name = path.removeprefix("gs://").split("/", 1)
    if bucket not in apis.storage.buckets:
        apis.storage.create_bucket(bucket, PROJECT)
    declared = [{"name": one, "isOptional": True} for one in parameters]
    spec = {"image": "launcher:1", "metadata": {"name": "t", "parameters": declared}}
    apis.storage.put(bucket, name, json.dumps(spec).encode(), "application/json")


def launch(apis: GoogleApis, name: str, **parameter: Any) -> dataflow.Job:
    parameter |= {"job_name": name, "container_spec_gcs_path": SPEC}
    request = {"project_id": PROJECT, "location": REGION, "launch_parameter": parameter}
    return rest(dataflow.FlexTemplatesServiceClient, apis).launch_flex_template(request=request).job


def job_request(job_id: str, **fields: Any) -> dict[str, Any]:
    return {"project_id": PROJECT, "location": REGION, "job_id": job_id} | fields


def test_dataflow_launches_and_lists_by_pages(google_apis: GoogleApis) -> None:
    put_spec(google_apis, SPEC, "window_s")
    first = launch(google_apis, "load", parameters={"window_s": "60"})
    launch(google_apis, "bars")
    launch(google_apis, "pull")
    listed = rest(dataflow.JobsV1Beta3Client, google_apis).list_jobs(
        request={"project_id": PROJECT, "location": REGION, "filter": "ALL"}
    )

    assert first.current_state == S.JOB_STATE_PENDING
    assert [job.name for job in listed] == ["pull", "bars", "load"]  # newest first
    assert {job.current_state for job in listed} == {S.JOB_STATE_RUNNING}
    assert len(google_apis.recorder.of("dataflow", "GET", "/jobs")) == 2  # pages of 2
    kept = google_apis.dataflow.jobs_named("load")[0]["launchParameter"]
    assert kept["parameters"] == {"window_s": "60"}
    with pytest.raises(exceptions.Conflict, match="already an active job named load"):
        launch(google_apis, "load")


def test_dataflow_drains_and_cancels_settle_after_reads(google_apis: GoogleApis) -> None:
    put_spec(google_apis)
    jobs = rest(dataflow.JobsV1Beta3Client, google_apis)
    drained = launch(google_apis, "load").id
    cancelled = google_apis.dataflow.add_job("bars")["id"]

    def request(job_id: str, state: int) -> int:
        job = jobs.update_job(request=job_request(job_id, job={"requested_state": state}))
        return job.current_state

    def read(job_id: str) -> int:
        return jobs.get_job(request=job_request(job_id)).current_state

    assert request(drained, S.JOB_STATE_DRAINED) == S.JOB_STATE_DRAINING
    assert [read(drained), read(drained)] == [S.JOB_STATE_DRAINING, S.JOB_STATE_DRAINED]
    assert request(cancelled, S.JOB_STATE_CANCELLED) == S.JOB_STATE_CANCELLING
    assert [read(cancelled), read(cancelled)] == [S.JOB_STATE_CANCELLING, S.JOB_STATE_CANCELLED]
    assert google_apis.recorder.of("dataflow", "PUT")[0].body == {"requestedState": 8}
    with pytest.raises(exceptions.BadRequest, match="already JOB_STATE_DRAINED"):
        request(drained, S.JOB_STATE_CANCELLED)
    with pytest.raises(exceptions.BadRequest, match="cannot request JOB_STATE_DONE"):
        request(launch(google_apis, "pull").id, S.JOB_STATE_DONE)


def test_dataflow_update_launch_replaces_the_running_job(google_apis: GoogleApis) -> None:
    put_spec(google_apis)
    jobs = rest(dataflow.JobsV1Beta3Client, google_apis)
    with pytest.raises(exceptions.NotFound):
        launch(google_apis, "load", update=True)
    old = launch(google_apis, "load")
    new = launch(google_apis, "load", update=True, transform_name_mappings={"Old": "New"})
    replaced = jobs.get_job(request=job_request(old.id))
    kept = google_apis.dataflow.jobs_named("load")[1]["launchParameter"]

    assert replaced.current_state == S.JOB_STATE_UPDATED
    assert (replaced.replaced_by_job_id, new.replace_job_id) == (new.id, old.id)
    assert kept["transformNameMappings"] == {"Old": "New"}
    google_apis.dataflow.fail("load")
    assert jobs.get_job(request=job_request(new.id)).current_state == S.JOB_STATE_FAILED


def test_cloud_run_deploys_through_operations(google_apis: GoogleApis) -> None:
    run = rest(run_v2.ServicesClient, google_apis)
    wanted = run_v2.Service(template={"containers": [{"image": "api:1"}]})
    created = run.create_service(parent=PARENT, service=wanted, service_id="api").result(10)
    with pytest.raises(exceptions.Conflict):
        run.create_service(parent=PARENT, service=wanted, service_id="api")
    created.template.containers[0].image = "api:2"
    updated = run.update_service(service=created).result(10)
    google_apis.run.revision_fails = "The user-provided container failed to start"
    with pytest.raises(exceptions.FailedPrecondition, match="failed to start"):
        run.update_service(service=updated).result(10)
    after = run.get_service(name=SERVICE)

    assert (created.uri, created.generation) == ("https://api-standin.a.run.app", 1)
    assert created.latest_ready_revision == f"{SERVICE}/revisions/api-00001-std"
    assert (updated.generation, updated.template.containers[0].image) == (2, "api:2")
    assert after.latest_created_revision == f"{SERVICE}/revisions/api-00003-std"
    assert after.latest_ready_revision == updated.latest_ready_revision
    assert after.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    assert google_apis.recorder.of("run", "GET", "/operations/")  # polled the operations path


def test_cloud_run_services_reconcile_for_a_few_reads_after_a_deploy(
    google_apis: GoogleApis,
) -> None:
    run = rest(run_v2.ServicesClient, google_apis)
    wanted = run_v2.Service(template={"containers": [{"image": "api:1"}]})
    run.create_service(parent=PARENT, service=wanted, service_id="api").result(10)
    google_apis.run.operation_reads = 3
    google_apis.run.revision_fails = "The user-provided container failed to start"
    run.update_service(service=run.get_service(name=SERVICE))

    reads = [run.get_service(name=SERVICE) for _ in range(3)]

    assert [read.reconciling for read in reads] == [True, True, False]
    first, last = reads[0], reads[-1]
    assert first.terminal_condition.state == run_v2.Condition.State.CONDITION_RECONCILING
    assert first.latest_ready_revision == f"{SERVICE}/revisions/api-00001-std", "still serving"
    assert last.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    assert last.terminal_condition.message == "The user-provided container failed to start"


def test_secret_manager_reads_and_accesses_versions(google_apis: GoogleApis) -> None:
    for value, state in ((b"old", "ENABLED"), (b"new", "ENABLED"), (b"off", "DISABLED")):
        google_apis.secrets.add_version("api-key", value, state)
    secrets = rest(secretmanager_v1.SecretManagerServiceClient, google_apis)
    versions = f"projects/{PROJECT}/secrets/api-key/versions"
    accessed = secrets.access_secret_version(name=f"{versions}/2")

    assert secrets.get_secret_version(name=f"{versions}/latest").name == f"{versions}/3"
    assert (accessed.name, accessed.payload.data) == (f"{versions}/2", b"new")
    assert accessed.payload.data_crc32c == google_crc32c.value(b"new")
    with pytest.raises(exceptions.BadRequest, match="DISABLED"):
        secrets.access_secret_version(name=f"{versions}/latest")
    with pytest.raises(exceptions.NotFound):
        secrets.get_secret_version(name=f"projects/{PROJECT}/secrets/nope/versions/1")


def test_service_account_credentials_refresh_at_the_stand_in(google_apis: GoogleApis) -> None:
    info = service_account_info(f"{google_apis.url}/token")
    access = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    identity = service_account.IDTokenCredentials.from_service_account_info(
        info, target_audience="https://api-standin.a.run.app"
    )
    access.refresh(Request())
    identity.refresh(Request())
    grants = google_apis.recorder.of("oauth", "POST", "/token")

    assert access.token == "standin-1"
    assert claims_of(identity.token)["aud"] == "https://api-standin.a.run.app"
    assert claims_of(identity.token)["email"] == info["client_email"]
    assert [call.body["grant_type"] for call in grants] == [JWT_BEARER, JWT_BEARER]
    assert grants[1].body["target_audience"] == "https://api-standin.a.run.app"


def monitoring_client(stand_in: MonitoringStandIn) -> monitoring_v3.MetricServiceClient:
    channel = grpc.insecure_channel(stand_in.address)
    return monitoring_v3.MetricServiceClient(
        transport=transports.MetricServiceGrpcTransport(channel=channel)
    )


def test_monitoring_lists_the_matching_points_newest_first(monitoring: MonitoringStandIn) -> None:
    undelivered = "pubsub.googleapis.com/subscription/num_undelivered_messages"
    now = int(time.time())
    monitoring.set_points(undelivered, "load", [(now - 120, 5), (now - 60, 7), (now - 9000, 1)])
    monitoring.set_points(undelivered, "other", [(now - 60, 99)])
    series = monitoring_client(monitoring).list_time_series(
        request={
            "name": f"projects/{PROJECT}",
            "filter": f'metric.type = "{undelivered}" AND resource.labels.subscription_id = "load"',
            "interval": {"end_time": {"seconds": now}, "start_time": {"seconds": now - 600}},
            "page_size": 1,
        }
    )

    assert [point.value.int64_value for one in series for point in one.points] == [7, 5]
    assert len(monitoring.recorder.of("monitoring", "ListTimeSeries")) == 2  # a point a page
    monitoring.recorder.fail("monitoring", "ListTimeSeries", ".", 503)
    with pytest.raises(exceptions.ServiceUnavailable):
        monitoring_client(monitoring).list_time_series(name=f"projects/{PROJECT}", retry=None)


FAULTS = {
    404: exceptions.NotFound,
    409: exceptions.Conflict,  # over REST, never its AlreadyExists or Aborted subclasses
    429: exceptions.TooManyRequests,
    503: exceptions.ServiceUnavailable,
}


@pytest.mark.parametrize("status", FAULTS)
def test_faults_surface_as_their_exceptions(google_apis: GoogleApis, status: int) -> None:
    google_apis.secrets.add_version("key", b"k")
    name = f"projects/{PROJECT}/secrets/key/versions/1"
    google_apis.recorder.fail("secretmanager", "GET", "/secrets/key/", status, 1, 2)
    secrets = rest(secretmanager_v1.SecretManagerServiceClient, google_apis)
    with pytest.raises(FAULTS[status]) as raised:
        secrets.get_secret_version(name=name, retry=None)  # no retries of 429 and 503

    assert raised.value.response.headers["Retry-After"] == "2"
    assert secrets.get_secret_version(name=name).name == name  # it failed once, as told
    assert len(google_apis.recorder.of("secretmanager", "GET")) == 2
