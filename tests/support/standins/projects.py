"""A stand-in project as `quotestream gcp bootstrap` and `quotestream release` leave it, made
in-process for the tests that start from there (the DAG tests on the gcp target): the
bootstrap's grants (`grants`, which tests/gcp/test_bootstrap.py shows the real command binds,
each on its resource), its buckets, repositories, relay key and the API's placeholder service,
and a release's images and specs. tests/gcp/test_from_zero.py makes the same through the real
commands."""

from __future__ import annotations

import json

from quotestream.entrypoints.gcp_bootstrap import (
    PLACEHOLDER_IMAGE,
    Layout,
    Resource,
    grants,
    iam_name,
)
from quotestream.entrypoints.release import Release
from quotestream.settings import Settings
from tests.conftest import REPO
from tests.support.standins.dataflow import flex_template_spec
from tests.support.standins.google_apis import GoogleApis


def composer_agent(apis: GoogleApis) -> str:
    number = apis.cli.number
    return f"serviceAccount:service-{number}@cloudcomposer-accounts.iam.gserviceaccount.com"


def bootstrapped(apis: GoogleApis, settings: Settings) -> Layout:
    """`settings.project` as the bootstrap leaves it (but its Pub/Sub topic, subscription and
    dataset, which provisioning makes as well), permissions enforced."""
    layout = Layout(settings, "quotestream")
    project, region = settings.project, settings.region
    apis.cli.reset(project)
    apis.authority.enforced = True
    for bucket in (layout.templates_bucket, layout.staging_bucket):
        apis.storage.create_bucket(bucket, project, region)
    for name, kind in ((layout.docker_repository, "docker"), (layout.python_repository, "python")):
        repository = iam_name(layout, Resource("repository", name))
        apis.registry.create_repository(repository, kind, immutable_tags=kind == "docker")
    apis.secrets.add_version(layout.secret, b"k" * 32)
    placeholder = {
        "template": {
            "serviceAccount": layout.api_account,
            "containers": [{"image": PLACEHOLDER_IMAGE}],
        }
    }
    parent = f"projects/{project}/locations/{region}"
    admin = apis.cli.admin_authorization
    apis.run.create(parent, {"serviceId": settings.api_service}, placeholder, admin)
    for grant in grants(layout, composer_agent(apis)):
        apis.grants.grant(iam_name(layout, grant.on), grant.role, grant.member)
    return layout


def released(apis: GoogleApis, layout: Layout, tag: str) -> Release:
    """The images of release `tag` pushed, its specs written (by the administrator)."""
    release = Release(layout, tag)
    apis.registry.push(release.api_image, f"sha256:{'0' * 64}")
    for kind in ("load", "extract"):
        image = release.dataflow_image.replace("{pipeline}", kind)
        apis.registry.push(image, f"sha256:{'1' * 64}")
        metadata = json.loads((REPO / f"beam_pipelines/{kind}_quotes.metadata.json").read_text())
        spec = json.dumps(flex_template_spec(image, metadata)).encode()
        bucket, name = f"{release.templates}/{kind}_quotes.json".removeprefix("gs://").split("/", 1)
        apis.storage.put(bucket, name, spec, "application/json")
    return release
