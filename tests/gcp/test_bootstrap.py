"""`quotestream gcp bootstrap` against stand-in tools: gcloud, bq on PATH send each call to the
stand-ins, which carry it out on one empty stand-in project (Pub/Sub and BigQuery are the
emulators). The dry run only looks; the run makes everything once and grants exactly the roles
of `grants`, each on its resource; a second run changes nothing."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from quotestream.entrypoints.gcp_bootstrap import API_URL_UNKNOWN, Layout, grants, iam_name
from quotestream.settings import Settings
from tests.conftest import REPO
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.permissions import OWNER, ROLE_PERMISSIONS
from tests.support.standins.project import COMPOSER_IMAGE, REGION, Quotestream, bootstrap_args

pytestmark = pytest.mark.integration

# Roles whose lowest level is the project: the only ones the bootstrap may bind there.
PROJECT_ONLY = {
    "roles/composer.worker",
    "roles/dataflow.worker",
    "roles/dataflow.developer",
    "roles/viewer",
    "roles/bigquery.jobUser",
    "roles/monitoring.alertPolicyEditor",
    "roles/monitoring.dashboardEditor",
}
READ_ONLY = (" describe ", " get-iam-policy ", " list ", " show ")


def bootstrap(quotestream: Quotestream, project: str, *extra: str) -> str:
    return quotestream(*bootstrap_args(project, *extra))


def mutations(apis: GoogleApis) -> list[str]:
    """The calls that change something (checks and look-ups are read-only)."""
    return [line for line in apis.cli.lines() if not any(r in line for r in READ_ONLY)]


def layout(project: str) -> Layout:
    return Layout(Settings(target="gcp", project=project, region=REGION), "quotestream")


def test_the_dry_run_only_looks_and_prints_every_step_with_its_reason(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    printed = bootstrap(quotestream, project, "--dry-run").splitlines()

    assert mutations(google_apis) == []
    would = [line.removeprefix("would run: ") for line in printed if line.startswith("would run")]
    reasons = [line for line in printed if line.startswith("# ")]
    assert len(would) == len(reasons)
    assert not [line for line in printed if line.startswith("exists:")]
    agent = f"service-{google_apis.cli.number}@cloudcomposer-accounts.iam.gserviceaccount.com"
    assert any(agent in line for line in would), "the project's number was looked up"
    assert f"QUOTESTREAM_API_URL={API_URL_UNKNOWN}" in would[-1]


def test_a_run_makes_what_the_dry_run_printed_and_grants_exactly_the_bootstraps_roles(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    planned = [
        shlex.split(line.removeprefix("would run: "))
        for line in bootstrap(quotestream, project, "--dry-run").splitlines()
        if line.startswith("would run: ")
    ]
    google_apis.cli.calls.clear()

    printed = bootstrap(quotestream, project)

    name = f"projects/{project}/locations/{REGION}/services/quotestream-api"
    service = google_apis.run.services[name]
    made = [
        [word.replace(service["uri"], API_URL_UNKNOWN) for word in shlex.split(line)]
        for line in mutations(google_apis)
    ]
    assert made == planned, "the calls on the wire are the ones the dry run printed"
    # The relay key: a version from stdin, in no command line and no output.
    (version,) = google_apis.secrets.secrets["quotestream-relay-key"]
    key = version["payload"].decode()
    assert len(key) >= 32
    assert key not in printed
    assert not any(key in line for line in google_apis.cli.lines())
    # The grants: exactly the bootstrap's, each on its resource (the administrator aside).
    wanted = layout(project)
    expected: dict[str, dict[str, set[str]]] = {}
    number = google_apis.cli.number
    agent = f"serviceAccount:service-{number}@cloudcomposer-accounts.iam.gserviceaccount.com"
    for grant in grants(wanted, agent):
        roles = expected.setdefault(iam_name(wanted, grant.on), {})
        roles.setdefault(grant.role, set()).add(grant.member)
    bound = google_apis.grants.bindings()
    bound[f"projects/{project}"].pop(OWNER)
    assert bound == expected
    environment = google_apis.cli.environments["quotestream"]
    assert environment.image_version == COMPOSER_IMAGE
    assert environment.service_account == wanted.composer_account
    assert environment.variables["QUOTESTREAM_API_URL"] == service["uri"]
    assert service["template"]["serviceAccount"] == wanted.api_account


def test_a_second_run_changes_nothing(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    bootstrap(quotestream, project)
    google_apis.cli.calls.clear()

    printed = bootstrap(quotestream, project)

    assert mutations(google_apis) == []
    assert "would change" not in printed
    assert "changed 0 things" in printed


def test_no_grant_is_project_wide_where_a_narrower_one_exists_and_none_sets_iam(
    google_apis: GoogleApis, project: str
) -> None:
    wanted = layout(project)
    listed = grants(wanted, "serviceAccount:agent@example.com")

    on_project = {grant.role for grant in listed if grant.on.kind == "project"}
    assert on_project <= PROJECT_ONLY
    # Besides roles/composer.worker, which Google requires and which carries Artifact
    # Registry's and objects' IAM permissions, no role lets an account change who may do what:
    # objectAdmin's storage.objects.setIamPolicy is of object ACLs, which uniform bucket-level
    # access (on both buckets) turns off.
    others = {grant.role for grant in listed} - {"roles/composer.worker"}
    setting = {p for r in others for p in ROLE_PERMISSIONS[r] if p.endswith("setIamPolicy")}
    assert setting == {"storage.objects.setIamPolicy"}
    (admin,) = [grant for grant in listed if grant.role == "roles/storage.objectAdmin"]
    assert admin.on.name == wanted.staging_bucket


def test_the_workers_may_add_to_the_templates_bucket_but_never_change_a_spec(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    """roles/dataflow.worker, required project-wide, carries storage.objects.create: the
    workers can add objects anywhere, but replacing or deleting one needs storage.objects.delete
    or .update, which they hold on the staging bucket only."""
    bootstrap(quotestream, project)
    wanted = layout(project)
    workers = f"serviceAccount:{wanted.workers_account}"
    templates = google_apis.storage.bucket_chain(wanted.templates_bucket)
    staging = google_apis.storage.bucket_chain(wanted.staging_bucket)
    may = google_apis.authority.member_may

    assert not may(workers, "storage.objects.delete", *templates)
    assert not may(workers, "storage.objects.update", *templates)
    assert may(workers, "storage.objects.delete", *staging)


def test_an_image_version_that_is_not_a_pinned_build_is_refused() -> None:
    command = [
        sys.executable,
        "-m",
        "quotestream.entrypoints.cli",
        "gcp",
        "bootstrap",
        "--project=p",
        f"--region={REGION}",
        "--composer-image-version=composer-3-airflow-3",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "is not a pinned Composer 3 build" in done.stderr
