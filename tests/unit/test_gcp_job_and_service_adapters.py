"""The Dataflow and Cloud Run adapters against fakes of the clients' surface: what they ask
Google for, and how they read the answers. (No emulator exists for either service.)"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import dataflow_v1beta3 as dataflow

from quotestream.adapters.gcp.cloud_run import CloudRunDeployer
from quotestream.adapters.gcp.dataflow import DataflowJobRunner
from quotestream.jobs import JobState, StopMode
from quotestream.resources import Outcome

pytestmark = pytest.mark.unit

S = dataflow.JobState


def job(name: str, job_id: str, state: Any, minute: int) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        id=job_id,
        current_state=state,
        create_time=datetime(2026, 11, 24, 10, minute, tzinfo=UTC),
    )


class FakeDataflow:
    def __init__(self, jobs: list[SimpleNamespace]) -> None:
        self.jobs = jobs
        self.launched: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    def list_jobs(self, request: dict[str, Any]) -> list[SimpleNamespace]:
        assert request["filter"] == dataflow.ListJobsRequest.Filter.ALL
        return self.jobs

    def launch_flex_template(self, request: dict[str, Any]) -> SimpleNamespace:
        self.launched.append(request)
        return SimpleNamespace(
            job=job(request["launch_parameter"]["job_name"], "new", S.JOB_STATE_PENDING, 59)
        )

    def update_job(self, request: dict[str, Any]) -> None:
        self.updates.append(request)


def runner(fake: FakeDataflow) -> DataflowJobRunner:
    return DataflowJobRunner(
        "proj",
        "us-central1",
        {"load": "gs://b/t/load_quotes.json"},
        {"settings": "{}"},
        {"temp_location": "gs://b/tmp"},
        jobs_client=fake,
        templates_client=fake,
    )


def test_find_takes_the_newest_job_of_that_name_and_maps_its_state() -> None:
    fake = FakeDataflow(
        [
            job("quotestream-load", "old", S.JOB_STATE_CANCELLED, 1),
            job("quotestream-load", "current", S.JOB_STATE_DRAINING, 5),
            job("other", "x", S.JOB_STATE_RUNNING, 9),
        ]
    )
    found = runner(fake).find("quotestream-load")
    assert (found.job_id, found.state) == ("current", JobState.STOPPING)
    assert runner(fake).find("nothing") is None


def test_launch_refuses_a_second_copy_and_otherwise_launches_the_flex_template() -> None:
    fake = FakeDataflow([job("quotestream-load", "live", S.JOB_STATE_RUNNING, 1)])
    with pytest.raises(RuntimeError, match="already running"):
        runner(fake).launch("quotestream-load", "load", [])
    fake.jobs = [job("quotestream-load", "gone", S.JOB_STATE_FAILED, 1)]
    launched = runner(fake).launch("quotestream-load", "load", ["--allowed_lateness_s=60"])
    assert launched.job_id == "new"
    request = fake.launched[0]
    assert request["launch_parameter"] == {
        "job_name": "quotestream-load",
        "container_spec_gcs_path": "gs://b/t/load_quotes.json",
        "parameters": {"settings": "{}", "allowed_lateness_s": "60"},
        "environment": {"temp_location": "gs://b/tmp"},
    }


@pytest.mark.parametrize(
    ("mode", "requested"),
    [(StopMode.DRAIN, S.JOB_STATE_DRAINED), (StopMode.CANCEL, S.JOB_STATE_CANCELLED)],
)
def test_stop_requests_drain_or_cancel_of_the_live_job(mode: StopMode, requested: Any) -> None:
    fake = FakeDataflow([job("quotestream-load", "live", S.JOB_STATE_RUNNING, 1)])
    runner(fake).stop("quotestream-load", mode)
    assert fake.updates == [
        {
            "project_id": "proj",
            "location": "us-central1",
            "job_id": "live",
            "job": {"requested_state": requested},
        }
    ]
    fake.jobs = [job("quotestream-load", "live", S.JOB_STATE_DONE, 1)]
    runner(fake).stop("quotestream-load", mode)
    assert len(fake.updates) == 1


class FakeRun:
    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.calls: list[tuple[str, Any]] = []

    def get_service(self, name: str) -> SimpleNamespace:
        if not self.exists:
            raise NotFound("no service")
        return SimpleNamespace(
            uri="https://api.run.app",
            latest_ready_revision="r2",
            latest_created_revision="r2",
            terminal_condition=None,
        )

    def create_service(self, parent: str, service: Any, service_id: str) -> SimpleNamespace:
        self.calls.append(("create", (parent, service, service_id)))
        return SimpleNamespace(result=lambda timeout: service)

    def update_service(self, service: Any) -> SimpleNamespace:
        self.calls.append(("update", service))
        return SimpleNamespace(result=lambda timeout: service)

    # Recorded, never expected: a policy binding roles/run.invoker to allUsers would make
    # the API public.
    def set_iam_policy(self, request: Any = None, **kwargs: Any) -> None:
        self.calls.append(("set_iam_policy", request or kwargs))


def deployer(fake: FakeRun) -> CloudRunDeployer:
    return CloudRunDeployer(
        "proj",
        "us-central1",
        "quotestream-api",
        "img:1",
        {"QUOTESTREAM_TARGET": "gcp"},
        api_key_secret="relay-key",
        client=fake,
    )


def test_deploy_creates_a_missing_service_and_updates_an_existing_one() -> None:
    missing = FakeRun(exists=False)
    assert deployer(missing).deploy().outcome is Outcome.CREATED
    kind, (parent, service, service_id) = missing.calls[0]
    assert (kind, parent, service_id) == (
        "create",
        "projects/proj/locations/us-central1",
        "quotestream-api",
    )
    container = service.template.containers[0]
    assert container.image == "img:1"
    env = {e.name: e for e in container.env}
    assert env["QUOTESTREAM_TARGET"].value == "gcp"
    # The relay key comes from Secret Manager, never as a literal value.
    assert env["QUOTESTREAM_API_KEY"].value == ""
    assert env["QUOTESTREAM_API_KEY"].value_source.secret_key_ref.secret == "relay-key"

    existing = FakeRun(exists=True)
    assert deployer(existing).deploy().outcome is Outcome.UPDATED
    kind, updated = existing.calls[0]
    assert kind == "update"
    assert updated.name == "projects/proj/locations/us-central1/services/quotestream-api"
    assert deployer(existing).url() == "https://api.run.app"


@pytest.mark.parametrize("exists", [False, True])
def test_the_service_is_private_no_public_invoker_and_iam_checked(exists: bool) -> None:
    fake = FakeRun(exists)
    deployer(fake).deploy()
    # No IAM call at all: nothing grants roles/run.invoker to allUsers.
    assert [kind for kind, _ in fake.calls] == ["update" if exists else "create"]
    service = fake.calls[0][1] if exists else fake.calls[0][1][1]
    # Cloud Run's switch that skips the invoker check for everyone must stay off.
    assert service.invoker_iam_disabled is False


def test_the_jobs_bootstrap_launches_run_the_templates_image_with_the_whole_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from quotestream import bootstrap
    from quotestream.adapters.gcp import dataflow as adapter
    from quotestream.settings import Settings

    fake = FakeDataflow([])
    monkeypatch.setattr(adapter.dataflow, "JobsV1Beta3Client", lambda: fake)
    monkeypatch.setattr(adapter.dataflow, "FlexTemplatesServiceClient", lambda: fake)
    settings = Settings(
        target="gcp",
        project="p",
        api_url="https://quotestream-api-123.a.run.app",
        bigquery_location="EU",
        dataflow_templates="gs://b/templates/",
        dataflow_temp_location="gs://b/tmp",
        dataflow_image="us-docker.pkg.dev/p/r/quotestream-{pipeline}:1",
    )

    bootstrap.build_job_runner(settings).launch("quotestream-load", "load", [])

    launch = fake.launched[0]["launch_parameter"]
    assert launch["container_spec_gcs_path"] == "gs://b/templates/load_quotes.json"
    assert (
        launch["environment"]["sdk_container_image"] == "us-docker.pkg.dev/p/r/quotestream-load:1"
    )
    on_workers = json.loads(launch["parameters"]["settings"])
    assert on_workers["api_url"] == settings.api_url
    assert on_workers["bigquery_location"] == "EU"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ({"api_url": "http://127.0.0.1:8080"}, "QUOTESTREAM_API_URL"),
        ({"dataflow_image": ""}, "QUOTESTREAM_DATAFLOW_IMAGE"),
        ({"dataflow_templates": ""}, "QUOTESTREAM_DATAFLOW_TEMPLATES"),
    ],
)
def test_a_gcp_launch_needs_a_reachable_api_and_the_workers_image_but_a_stop_does_not(
    monkeypatch: pytest.MonkeyPatch, missing: dict[str, str], message: str
) -> None:
    from quotestream import bootstrap
    from quotestream.adapters.gcp import dataflow as adapter
    from quotestream.settings import Settings

    fake = FakeDataflow([job("quotestream-load", "old", S.JOB_STATE_RUNNING, 1)])
    monkeypatch.setattr(adapter.dataflow, "JobsV1Beta3Client", lambda: fake)
    monkeypatch.setattr(adapter.dataflow, "FlexTemplatesServiceClient", lambda: fake)
    complete = {
        "api_url": "https://quotestream-api-123.a.run.app",
        "dataflow_templates": "gs://b/templates",
        "dataflow_temp_location": "gs://b/tmp",
        "dataflow_image": "us-docker.pkg.dev/p/r/quotestream-{pipeline}:1",
    }
    runner = bootstrap.build_job_runner(
        Settings(target="gcp", project="p", **{**complete, **missing})
    )

    runner.stop("quotestream-load", StopMode.CANCEL)
    assert len(fake.updates) == 1
    with pytest.raises(adapter.LaunchRefused, match=message):
        runner.launch("quotestream-extract", "extract", [])
    assert fake.launched == []
