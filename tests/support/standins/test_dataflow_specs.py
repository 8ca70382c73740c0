"""The Dataflow stand-in launches from the spec it reads back from Cloud Storage, as Dataflow
does: a launch whose spec is missing, or whose parameters the spec's metadata does not declare
(or lacks a required one, or fails a declared regex), is refused with InvalidTemplateParameters
in the error's details; a launch it accepts runs the spec's image on the launcher and the
sdkContainerImage on the workers. The specs here are built from the repository's own metadata
files, as `gcloud dataflow flex-template build` builds them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dataflow_v1beta3 as dataflow

from tests.conftest import REPO
from tests.support.standins.dataflow import (
    BEAM_STOCK_IMAGE,
    INVALID_PARAMETERS,
    flex_template_spec,
)
from tests.support.standins.google_apis import GoogleApis

pytestmark = pytest.mark.integration

PROJECT, REGION = "standin-project", "us-central1"
LAUNCHER = "us-central1-docker.pkg.dev/standin-project/quotestream/load:r1"
SPEC = "gs://templates/r1/load_quotes.json"


def metadata(kind: str) -> dict[str, Any]:
    path = REPO / "beam_pipelines" / f"{kind}_quotes.metadata.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.fixture
def load_spec(google_apis: GoogleApis) -> str:
    google_apis.storage.create_bucket("templates", PROJECT)
    spec = json.dumps(flex_template_spec(LAUNCHER, metadata("load"))).encode()
    google_apis.storage.put("templates", "r1/load_quotes.json", spec, "application/json")
    return SPEC


def launch(apis: GoogleApis, path: str, parameters: dict[str, str], **environment: Any) -> Any:
    launcher = dataflow.FlexTemplatesServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": apis.url},
    )
    parameter = {
        "job_name": "quotestream-load",
        "container_spec_gcs_path": path,
        "parameters": parameters,
        "environment": environment,
    }
    request = {"project_id": PROJECT, "location": REGION, "launch_parameter": parameter}
    return launcher.launch_flex_template(request=request).job


def violations(error: exceptions.GoogleAPICallError) -> dict[str, str]:
    (detail,) = error.details
    assert detail["@type"] == INVALID_PARAMETERS
    return {one["parameter"]: one["description"] for one in detail["parameterViolations"]}


def test_a_launch_whose_spec_is_missing_is_refused(google_apis: GoogleApis) -> None:
    google_apis.storage.create_bucket("templates", PROJECT)
    with pytest.raises(exceptions.BadRequest, match="Unable to read the template file"):
        launch(google_apis, SPEC, {"settings": "{}"})
    assert google_apis.dataflow.jobs == {}


def test_a_parameter_the_metadata_does_not_declare_is_refused(
    google_apis: GoogleApis, load_spec: str
) -> None:
    with pytest.raises(exceptions.BadRequest, match="template parameters are invalid") as raised:
        launch(google_apis, load_spec, {"settings": "{}", "poll_interval_s": "1"})

    assert set(violations(raised.value)) == {"poll_interval_s"}, "an extract option"
    assert raised.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert google_apis.dataflow.jobs == {}


def test_a_missing_required_parameter_and_a_value_off_its_regex_are_refused(
    google_apis: GoogleApis, load_spec: str
) -> None:
    with pytest.raises(exceptions.BadRequest) as raised:
        launch(google_apis, load_spec, {"allowed_lateness_s": "five minutes"})

    found = violations(raised.value)
    assert found["settings"] == "Missing required parameter"
    assert found["allowed_lateness_s"].startswith("Value does not match the regex")


def test_an_accepted_launch_runs_the_specs_image_and_the_sdk_container_image(
    google_apis: GoogleApis, load_spec: str
) -> None:
    workers = "us-central1-docker.pkg.dev/standin-project/quotestream/load:r1"
    job = launch(google_apis, load_spec, {"settings": "{}"}, sdk_container_image=workers)

    (stored,) = google_apis.dataflow.jobs.values()
    assert stored["id"] == job.id
    assert (stored["launcherImage"], stored["workerImage"]) == (LAUNCHER, workers)
    assert job.type_ == dataflow.JobType.JOB_TYPE_STREAMING, "the metadata says streaming"


def test_without_an_sdk_container_image_the_workers_run_beams_stock_image(
    google_apis: GoogleApis, load_spec: str
) -> None:
    launch(google_apis, load_spec, {"settings": "{}"})
    (stored,) = google_apis.dataflow.jobs.values()
    assert stored["workerImage"] == BEAM_STOCK_IMAGE
