"""The DAGs with QUOTESTREAM_TARGET=gcp, run by `dag.test()` as `airflow dags test` runs them,
on a stand-in project as `gcp bootstrap` and a release leave it, with exactly the bootstrap's
grants and permissions enforced: Pub/Sub and BigQuery are the emulators (which check no
permission), Dataflow, Cloud Run, Secret Manager, Cloud Storage, Monitoring and Google's token
endpoint are the local stand-ins. The credentials come from the Airflow connection
`google_cloud_default`, a key of the Composer environment's account whose token endpoint is the
stand-in's, so every call on the wire is that account's and is judged by its roles."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.entrypoints.gcp_bootstrap import Layout
from quotestream.services.provision import monitoring_policies
from quotestream.settings import Settings
from tests.support.dag_runs import states
from tests.support.local_runs import api_serving
from tests.support.standins.dataflow import launch_parameters, requested_state
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.monitoring import MonitoringStandIn
from tests.support.standins.oauth import key_file, service_account_info
from tests.support.standins.projects import bootstrapped, released

pytestmark = pytest.mark.integration

LOAD, EXTRACT = "quotestream-load", "quotestream-extract"
ADC_ACCOUNT = "someone-at-a-laptop@standin-project.iam.gserviceaccount.com"
OLDEST_UNACKED = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"


@pytest.fixture
def gcp_target(
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: None,
    google_apis: GoogleApis,
    monitoring: MonitoringStandIn,
    pubsub_emulator: ServiceProcess,
    bigquery_emulator: ServiceProcess,
    tmp_path: Path,
    loopback_only_google_auth: None,
) -> Settings:
    """What the bootstrapped Composer environment would set, with every Google endpoint on
    loopback. (`monitoring` comes first: its reset turns enforcement off again.)"""
    project = f"gcp-dags-{uuid.uuid4().hex[:8]}"
    layout = bootstrapped(google_apis, Settings(target="gcp", project=project))
    release = released(google_apis, layout, "r1")
    endpoints = {api: google_apis.url for api in ("dataflow", "run", "secretmanager")}
    endpoints["monitoring"] = f"http://{monitoring.address}"
    endpoints["bigquery"] = f"http://{bigquery_emulator.address}"
    token_uri = f"{google_apis.url}/token"
    key = service_account_info(token_uri, layout.composer_account, project)
    # Outside Airflow (the test's own setup calls) the adapters use Application Default
    # Credentials: another account, so the calls of each are told apart.
    adc = key_file(tmp_path / "adc.json", token_uri, ADC_ACCOUNT)
    connection = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(key)}}
    variables = {
        **layout.environment_variables("https://quotestream-api-standin.a.run.app"),
        **release.environment_variables(),
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(connection),
        "GOOGLE_APPLICATION_CREDENTIALS": adc,
        "QUOTESTREAM_MESSAGE_ORDERING": "false",
        "QUOTESTREAM_GOOGLE_API_ENDPOINTS": json.dumps(endpoints),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


def as_administrator(apis: GoogleApis, settings: Settings) -> None:
    """The test's own setup calls (provisioning before a DAG) are the administrator's."""
    apis.grants.grant(
        f"projects/{settings.project}", "roles/owner", "serviceAccount:" + ADC_ACCOUNT
    )


def restart(dagbag: Any, **conf: Any) -> Any:
    """Every param named: `dag.test()` keeps a previous run's conf in the DAG's params."""
    defaults = {"mode": "default", "transform_name_mappings": {}, "timeout_s": 30}
    return dagbag.get_dag("quotestream_restart").test(run_conf={**defaults, **conf})


def assert_composer_credentials_on_the_wire(
    apis: GoogleApis, settings: Settings, *kinds: str
) -> None:
    """Each call carries a token of the Composer environment's account, from the connection's
    key: a JWT the key signed itself, or an access token the token endpoint issued for it."""
    calls = [call for kind in kinds for call in apis.recorder.of(kind)]
    assert calls
    callers = {apis.authority.caller(call.authorization) for call in calls}
    composer = Layout(settings, "quotestream").composer_account
    assert callers == {f"serviceAccount:{composer}"}


def test_provision_on_gcp_makes_pubsub_bigquery_and_the_alerting_with_the_bootstraps_roles(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis, monitoring: MonitoringStandIn
) -> None:
    run = dagbag.get_dag("quotestream_provision").test()
    assert states(run) == {"provision": "success"}

    # Alerting that does not depend on Airflow: the policies and the dashboard, in the project.
    policies = monitoring.alerting.policies.values()
    assert {p.display_name for p in policies} == {
        spec.display_name for spec in monitoring_policies(gcp_target)
    }
    assert all(p.name.startswith(f"projects/{gcp_target.project}/") for p in policies)
    (board,) = monitoring.alerting.dashboards.values()
    assert len(board.grid_layout.widgets) == len(policies)
    # Monitoring's calls carry the Composer account's token too (the loopback channel's).
    assert_composer_credentials_on_the_wire(google_apis, gcp_target, "monitoring")
    # Who may use what is the bootstrap's: provisioning sets no IAM policy anywhere.
    assert not [c for c in google_apis.recorder.calls if "IamPolicy" in c.path + c.method]

    assert states(dagbag.get_dag("quotestream_provision").test()) == {"provision": "success"}
    monitoring_writes = [c for c in monitoring.recorder.of("monitoring") if "Create" in c.method]
    assert len(monitoring_writes) == len(policies) + 1, "created once"
    assert not [c for c in monitoring.recorder.of("monitoring") if "Update" in c.method]


@pytest.fixture
def api_of_target(gcp_target: Settings, google_apis: GoogleApis, logs_dir: Path) -> Iterator[str]:
    """A real API process publishing to the target's project: what the Cloud Run URL serves."""
    as_administrator(google_apis, gcp_target)
    bootstrap.build_provision_service(gcp_target).run()
    google_apis.recorder.clear()  # what follows is the DAG's
    env = {"QUOTESTREAM_TARGET": "local", "QUOTESTREAM_PROJECT": gcp_target.project}
    with api_serving(logs_dir, env) as url:
        yield url


def test_deploy_api_on_gcp_updates_the_bootstraps_service_and_smoke_tests_it(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis, api_of_target: str
) -> None:
    api_url = api_of_target
    google_apis.run.service_uri = api_url  # the Cloud Run URL answers with a real API process
    google_apis.run.operation_reads = 2  # each deploy reconciles for a read

    for _ in range(2):
        run = dagbag.get_dag("quotestream_deploy_api").test()
        assert states(run) == {"deploy": "success", "smoke_test": "success"}

    service = f"/v2/projects/{gcp_target.project}/locations/us-central1/services"
    assert not google_apis.recorder.of("run", "POST"), "the bootstrap made it: only updates"
    first, _ = google_apis.recorder.of("run", "PATCH")
    assert first.path == f"{service}/quotestream-api"
    template = first.body["template"]
    assert template["serviceAccount"] == gcp_target.api_service_account
    assert template["containers"][0]["image"] == gcp_target.api_image
    assert gcp_target.api_image.endswith("/api:r1"), "the release's image"
    # Who may invoke it is the bootstrap's to grant: the deploy sets no IAM policy.
    assert not [c for c in google_apis.recorder.of("run") if "IamPolicy" in c.path]
    # The smoke test called the API with an identity token minted from the same connection.
    id_tokens = [c for c in google_apis.recorder.of("oauth") if "target_audience" in c.body]
    assert {c.body["target_audience"] for c in id_tokens} == {api_url}
    assert_composer_credentials_on_the_wire(google_apis, gcp_target, "run", "secretmanager")


def test_streaming_on_gcp_launches_each_job_once_from_the_releases_specs_and_images(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis, monitoring: MonitoringStandIn
) -> None:
    as_administrator(google_apis, gcp_target)
    bootstrap.build_provision_service(gcp_target).run()
    google_apis.recorder.clear()  # what follows is the DAG's
    streaming = dagbag.get_dag("quotestream_streaming")

    assert set(states(streaming.test()).values()) == {"success"}
    now = int(time.time())
    monitoring.set_points(OLDEST_UNACKED, gcp_target.load_subscription, [(now - 30, 1200)])
    assert states(streaming.test()) == {
        "ensure_running": "success",
        "measure_health": "success",
        "alert_if_unhealthy": "failed",
    }

    launched = launch_parameters(google_apis.recorder)
    assert sorted(p["jobName"] for p in launched) == [EXTRACT, LOAD], "one launch each"
    load = next(p for p in launched if p["jobName"] == LOAD)
    templates = gcp_target.dataflow_templates
    assert load["containerSpecGcsPath"] == f"{templates}/load_quotes.json"
    assert load["environment"]["serviceAccountEmail"] == gcp_target.dataflow_service_account
    assert load["environment"]["maxWorkers"] == gcp_target.dataflow_max_workers
    assert json.loads(load["parameters"]["settings"])["project"] == gcp_target.project
    for name in (LOAD, EXTRACT):
        (job,) = google_apis.dataflow.jobs_named(name)
        image = gcp_target.dataflow_image.replace("{pipeline}", name.removeprefix("quotestream-"))
        assert (job["currentState"], job["type"]) == ("JOB_STATE_RUNNING", "JOB_TYPE_STREAMING")
        assert job["launcherImage"] == job["workerImage"] == image, "the spec's, the release's"
    filters = {c.body["filter"] for c in google_apis.recorder.of("monitoring")}
    assert all(f'subscription_id = "{gcp_target.load_subscription}"' in f for f in filters)
    assert_composer_credentials_on_the_wire(google_apis, gcp_target, "dataflow", "monitoring")


@pytest.mark.parametrize(
    ("conf", "stop"),
    [
        ({"job": "load"}, "JOB_STATE_DRAINED"),
        ({"job": "extract"}, "JOB_STATE_CANCELLED"),
        ({"job": "load", "mode": "cancel"}, "JOB_STATE_CANCELLED"),
    ],
)
def test_restart_on_gcp_stops_as_each_job_needs_then_relaunches(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis, conf: dict[str, str], stop: str
) -> None:
    name = {"load": LOAD, "extract": EXTRACT}[conf["job"]]
    old = google_apis.dataflow.add_job(name)

    run = restart(dagbag, **conf)

    assert states(run) == {"restart": "success"}
    (put,) = google_apis.recorder.of("dataflow", "PUT")
    assert put.path.endswith(f"/jobs/{old['id']}")
    assert requested_state(put.body) == stop
    first, second = google_apis.dataflow.jobs_named(name)
    assert first["currentState"] == stop
    assert second["currentState"] == "JOB_STATE_RUNNING"
    (launch,) = launch_parameters(google_apis.recorder)
    assert "update" not in launch


def test_restart_on_gcp_updates_the_load_in_place(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis
) -> None:
    old = google_apis.dataflow.add_job(LOAD)
    renamed = {"WriteBars/Insert": "WriteBars/InsertRows"}

    run = restart(dagbag, job="load", mode="update", transform_name_mappings=renamed)

    assert states(run) == {"restart": "success"}
    assert google_apis.recorder.of("dataflow", "PUT") == [], "an update stops nothing"
    (launch,) = launch_parameters(google_apis.recorder)
    assert (launch["update"], launch["transformNameMappings"]) == (True, renamed)
    first, second = google_apis.dataflow.jobs_named(LOAD)
    assert (first["id"], first["currentState"]) == (old["id"], "JOB_STATE_UPDATED")
    assert second["replaceJobId"] == old["id"]


def test_restart_on_gcp_fails_without_a_second_job_when_the_drain_never_ends(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis
) -> None:
    google_apis.dataflow.add_job(LOAD)
    google_apis.dataflow.stuck_draining = True

    run = restart(dagbag, job="load", timeout_s=10)

    assert states(run) == {"restart": "failed"}
    assert google_apis.recorder.of("dataflow", "POST") == []
    assert [j["currentState"] for j in google_apis.dataflow.jobs_named(LOAD)] == [
        "JOB_STATE_DRAINING"
    ]


def test_restart_on_gcp_fails_and_leaves_the_job_running_when_the_update_is_incompatible(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis
) -> None:
    old = google_apis.dataflow.add_job(LOAD)
    google_apis.dataflow.update_incompatible = True

    run = restart(dagbag, job="load", mode="update")

    assert states(run) == {"restart": "failed"}
    assert google_apis.recorder.of("dataflow", "PUT") == [], "nothing stopped"
    first, second = google_apis.dataflow.jobs_named(LOAD)
    assert (first["id"], first["currentState"]) == (old["id"], "JOB_STATE_RUNNING")
    assert second["currentState"] == "JOB_STATE_FAILED"


def test_teardown_on_gcp_cancels_the_jobs_and_deletes_the_resources(
    dagbag: Any, gcp_target: Settings, google_apis: GoogleApis
) -> None:
    as_administrator(google_apis, gcp_target)
    bootstrap.build_provision_service(gcp_target).run()
    google_apis.recorder.clear()  # what follows is the DAG's
    for name in (EXTRACT, LOAD):
        google_apis.dataflow.add_job(name)

    run = dagbag.get_dag("quotestream_teardown").test(run_conf={"confirm": gcp_target.project})

    assert states(run) == {"teardown": "success"}
    puts = google_apis.recorder.of("dataflow", "PUT")
    assert sorted(requested_state(put.body) for put in puts) == ["JOB_STATE_CANCELLED"] * 2
    warehouse = bootstrap.build_warehouse(gcp_target)
    assert warehouse.delete_dataset() is False, "the dataset is gone already"
    admin = bootstrap.build_messaging_admin(gcp_target)
    assert admin.delete_topic(gcp_target.quotes_topic) is False, "the topic is gone already"
