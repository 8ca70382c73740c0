"""The stand-ins answer as Google's IAM does once permissions are enforced: the caller is the
account its token speaks for (an access token the token endpoint issued, or a JWT the account
signed itself), a role bound on the resource or its project grants the permissions the role
table lists, and a call without its method's permission gets 403 PERMISSION_DENIED with an
ErrorInfo naming the permission (REST), or the gRPC status PERMISSION_DENIED (Monitoring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.auth.transport.requests import Request
from google.cloud import dataflow_v1beta3 as dataflow
from google.oauth2 import service_account

from quotestream.adapters.gcp.access import ApiAccess
from quotestream.adapters.gcp.monitoring_alerts import CloudMonitoringAlerting, MonitoringRefused
from quotestream.domain.alerting import AlertThresholds, alert_policies
from quotestream.services.streaming import JOB_NAMES
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.monitoring import MonitoringStandIn
from tests.support.standins.oauth import key_file, service_account_info
from tests.support.standins.permissions import OWNER, ROLE_PERMISSIONS, member_of

pytestmark = pytest.mark.integration

PROJECT, REGION = "standin-project", "us-central1"
CALLER = f"dags@{PROJECT}.iam.gserviceaccount.com"
WORKERS = f"workers@{PROJECT}.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture
def credentials(
    google_apis: GoogleApis, tmp_path: Path, loopback_only_google_auth: None
) -> service_account.Credentials:
    google_apis.authority.enforced = True
    path = key_file(tmp_path / "key.json", f"{google_apis.url}/token", CALLER)
    return service_account.Credentials.from_service_account_file(path, scopes=[SCOPE])


def jobs_client(apis: GoogleApis, credentials: Any) -> dataflow.JobsV1Beta3Client:
    return dataflow.JobsV1Beta3Client(
        transport="rest", credentials=credentials, client_options={"api_endpoint": apis.url}
    )


def list_jobs(apis: GoogleApis, credentials: Any) -> list[Any]:
    request = {"project_id": PROJECT, "location": REGION}
    return list(jobs_client(apis, credentials).list_jobs(request=request))


def test_a_call_without_its_permission_gets_googles_403(
    google_apis: GoogleApis, credentials: service_account.Credentials
) -> None:
    with pytest.raises(exceptions.Forbidden) as refused:
        list_jobs(google_apis, credentials)

    assert refused.value.reason == "IAM_PERMISSION_DENIED"
    assert refused.value.domain == "iam.googleapis.com"
    assert refused.value.metadata == {
        "permission": "dataflow.jobs.list",
        "resource": f"projects/{PROJECT}",
    }
    body = refused.value.response.json()["error"]
    assert (body["code"], body["status"]) == (403, "PERMISSION_DENIED")


def test_a_role_on_the_project_grants_its_permissions_and_no_others(
    google_apis: GoogleApis, credentials: service_account.Credentials
) -> None:
    google_apis.grants.grant(f"projects/{PROJECT}", "roles/viewer", member_of(CALLER))
    job = google_apis.dataflow.add_job("quotestream-load")

    assert [one.id for one in list_jobs(google_apis, credentials)] == [job["id"]]
    cancel = {"requested_state": dataflow.JobState.JOB_STATE_CANCELLED}
    request = {"project_id": PROJECT, "location": REGION, "job_id": job["id"], "job": cancel}
    with pytest.raises(exceptions.Forbidden, match=r"dataflow\.jobs\.cancel"):
        jobs_client(google_apis, credentials).update_job(request=request)


def test_a_launch_needs_to_act_as_the_jobs_account(
    google_apis: GoogleApis, credentials: service_account.Credentials
) -> None:
    google_apis.grants.grant(f"projects/{PROJECT}", "roles/dataflow.developer", member_of(CALLER))
    launcher = dataflow.FlexTemplatesServiceClient(
        transport="rest", credentials=credentials, client_options={"api_endpoint": google_apis.url}
    )
    parameter = {
        "job_name": "quotestream-load",
        "container_spec_gcs_path": "gs://templates/load_quotes.json",
        "environment": {"service_account_email": WORKERS},
    }
    request = {"project_id": PROJECT, "location": REGION, "launch_parameter": parameter}

    with pytest.raises(exceptions.Forbidden) as refused:
        launcher.launch_flex_template(request=request)
    assert refused.value.metadata == {
        "permission": "iam.serviceAccounts.actAs",
        "resource": f"projects/{PROJECT}/serviceAccounts/{WORKERS}",
    }
    account = f"projects/{PROJECT}/serviceAccounts/{WORKERS}"
    google_apis.grants.grant(account, "roles/iam.serviceAccountUser", member_of(CALLER))
    with pytest.raises(exceptions.Forbidden, match=r"'storage\.objects\.get'"):
        launcher.launch_flex_template(request=request)  # on to reading the spec, as the caller
    google_apis.storage.create_bucket("templates", PROJECT)
    bucket = "projects/_/buckets/templates"
    google_apis.grants.grant(bucket, "roles/storage.objectViewer", member_of(CALLER))
    with pytest.raises(exceptions.BadRequest, match="Unable to read the template file"):
        launcher.launch_flex_template(request=request)


def test_the_caller_is_who_the_token_speaks_for(
    google_apis: GoogleApis, credentials: service_account.Credentials
) -> None:
    credentials.refresh(Request())  # an access token the token endpoint issued
    self_signed = service_account.Credentials.from_service_account_info(
        service_account_info(f"{google_apis.url}/token", WORKERS)
    ).with_always_use_jwt_access(True)
    self_signed = self_signed.with_scopes([SCOPE])
    self_signed.refresh(Request())  # a JWT the account signed itself, no token endpoint

    authority = google_apis.authority
    assert authority.caller(f"Bearer {credentials.token}") == member_of(CALLER)
    assert authority.caller(f"Bearer {self_signed.token}") == member_of(WORKERS)
    assert authority.caller("Bearer unknown") is None
    unauthenticated = requests.get(
        f"{google_apis.url}/v1b3/projects/{PROJECT}/locations/{REGION}/jobs", timeout=10
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"


def test_monitoring_over_grpc_knows_its_caller_and_refuses_as_google_does(
    google_apis: GoogleApis,
    monitoring: MonitoringStandIn,
    credentials: service_account.Credentials,
) -> None:
    """The adapter's loopback channel carries the caller's token (gRPC itself attaches none
    to an insecure channel): with Monitoring Viewer alone, provisioning's alert policies
    are refused at their creation, as the project's old README grants left them."""
    google_apis.authority.enforced = True  # monitoring's reset turned it off
    project = f"projects/{PROJECT}"
    google_apis.grants.grant(project, "roles/monitoring.viewer", member_of(CALLER))
    access = ApiAccess(credentials, f"http://{monitoring.address}")
    policy = alert_policies(AlertThresholds(), JOB_NAMES, "quotes-load", "api")[0]

    with pytest.raises(MonitoringRefused, match=r"monitoring\.alertPolicies\.create"):
        CloudMonitoringAlerting(PROJECT, access=access).ensure_alert_policy(policy)
    google_apis.grants.grant(project, "roles/monitoring.alertPolicyEditor", member_of(CALLER))
    CloudMonitoringAlerting(PROJECT, access=access).ensure_alert_policy(policy)

    calls = monitoring.recorder.of("monitoring")
    assert [call.method for call in calls] == ["ListAlertPolicies", "CreateAlertPolicy"] * 2
    assert {google_apis.authority.caller(call.authorization) for call in calls} == {
        member_of(CALLER)
    }


def test_every_role_in_the_table_has_the_permissions_of_a_checked_service() -> None:
    from tests.support.standins.permissions import CHECKED_SERVICES

    for role, permissions in ROLE_PERMISSIONS.items():
        assert role != OWNER
        assert all(p.startswith(CHECKED_SERVICES) for p in permissions), role


def test_a_job_whose_image_was_never_pushed_or_cannot_be_pulled_fails_after_its_launch(
    google_apis: GoogleApis, credentials: service_account.Credentials
) -> None:
    """As a launcher VM that cannot pull its image: Dataflow accepts the launch, the job fails."""
    import json

    from tests.support.standins.dataflow import flex_template_spec

    project = f"projects/{PROJECT}"
    repository = f"{project}/locations/{REGION}/repositories/quotestream"
    image = f"{REGION}-docker.pkg.dev/{PROJECT}/quotestream/load:r1"
    google_apis.grants.grant(project, "roles/dataflow.developer", member_of(CALLER))
    google_apis.grants.grant(project, "roles/composer.worker", member_of(CALLER))
    account = f"{project}/serviceAccounts/{WORKERS}"
    google_apis.grants.grant(account, "roles/iam.serviceAccountUser", member_of(CALLER))
    google_apis.storage.create_bucket("templates", PROJECT)
    spec = json.dumps(flex_template_spec(image, {"parameters": []})).encode()
    google_apis.storage.put("templates", "load_quotes.json", spec, "application/json")
    google_apis.registry.create_repository(repository, "docker")
    launcher = dataflow.FlexTemplatesServiceClient(
        transport="rest", credentials=credentials, client_options={"api_endpoint": google_apis.url}
    )

    def launch(name: str) -> dict[str, Any]:
        parameter = {
            "job_name": name,
            "container_spec_gcs_path": "gs://templates/load_quotes.json",
            "environment": {"service_account_email": WORKERS, "sdk_container_image": image},
        }
        request = {"project_id": PROJECT, "location": REGION, "launch_parameter": parameter}
        launcher.launch_flex_template(request=request)
        (job,) = google_apis.dataflow.jobs_named(name)
        return job

    never_pushed = launch("never-pushed")
    google_apis.registry.push(image, f"sha256:{'a' * 64}")
    unpullable = launch("unpullable")
    google_apis.grants.grant(repository, "roles/artifactregistry.reader", member_of(WORKERS))
    running = launch("running")

    assert never_pushed["currentState"] == "JOB_STATE_FAILED"
    assert "no such image" in never_pushed["failure"]
    assert unpullable["currentState"] == "JOB_STATE_FAILED"
    assert f"{WORKERS} may not pull" in unpullable["failure"]
    assert running["currentState"] == "JOB_STATE_RUNNING"
