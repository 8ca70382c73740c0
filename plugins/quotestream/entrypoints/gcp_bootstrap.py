"""`quotestream gcp bootstrap`: the one-time set-up of an empty Google Cloud project, run by an
administrator (roles/owner) with gcloud and bq. In order:

1. enables the APIs quotestream calls;
2. creates one service account per component: the API (Cloud Run), the Dataflow launcher and
   workers, the Composer environment (which runs the DAGs);
3. creates the Artifact Registry repositories: Docker images (immutable tags: a release tag
   always names the same image) and Python packages (the core's wheel, for Composer);
4. creates the templates bucket (flex-template specs, written by releases) apart from the
   staging bucket (what Dataflow stages and writes while it runs);
5. creates the relay key in Secret Manager, random, from stdin: never printed, never kept;
6. creates what the grants must be bound on and quotestream owns: the topic and subscription
   the jobs use, the dataset, and the API's Cloud Run service (from Google's sample image,
   private; `quotestream_deploy_api` replaces it);
7. grants each account its roles on the narrowest resource Google allows (see `grants`): on
   the project only the roles that exist only there;
8. creates the Cloud Composer 3 environment at a pinned image version, its service account the
   Composer one, quotestream's settings as its environment variables (or brings those
   variables up to date on an existing environment).

Every step first looks whether its work is there already (a describe, a policy read): a
second run changes nothing. `--dry-run` makes only those read-only looks and prints each step
it would run, and why."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from quotestream.entrypoints.gcloud_steps import Shell, Step, carry_out, gcloud_dict, succeeds
from quotestream.services.provision import load_subscription
from quotestream.settings import Settings

# Pinned: an environment keeps its build until upgraded, and composer/constraints.txt is one
# build's package set. An alias (composer-3-airflow-3) would move under the environment.
COMPOSER_IMAGE_VERSION = re.compile(r"composer-3-airflow-\d+\.\d+\.\d+-build\.\d+")
# Google's sample container, which Cloud Run's quickstart deploys: the service exists, private,
# until the first `quotestream_deploy_api` replaces it, so its IAM can be granted on it.
PLACEHOLDER_IMAGE = "us-docker.pkg.dev/cloudrun/container/hello"
API_URL_UNKNOWN = "<the URL Cloud Run gives the service>"
PROJECT_NUMBER_UNKNOWN = "<PROJECT_NUMBER>"
APIS = (
    "artifactregistry",
    "bigquery",
    "cloudbuild",
    "composer",
    "compute",
    "dataflow",
    "iam",
    "monitoring",
    "pubsub",
    "run",
    "secretmanager",
    "storage",
)


@dataclass(frozen=True)
class Layout:
    """What the bootstrap creates, named from the settings (QUOTESTREAM_*) and the project."""

    settings: Settings
    environment: str  # the Composer environment's name

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def region(self) -> str:
        return self.settings.region

    def account(self, component: str) -> str:
        return f"quotestream-{component}@{self.project}.iam.gserviceaccount.com"

    @property
    def api_account(self) -> str:
        return self.account("api")

    @property
    def workers_account(self) -> str:
        return self.account("dataflow")

    @property
    def composer_account(self) -> str:
        return self.account("composer")

    docker_repository = "quotestream"
    python_repository = "quotestream-python"

    @property
    def registry(self) -> str:
        """Where the release pushes the images."""
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.docker_repository}"

    @property
    def python_index(self) -> str:
        """The Python repository, as `composer deploy --python-repository` takes it."""
        return f"{self.region}-python.pkg.dev/{self.project}/{self.python_repository}"

    @property
    def templates_bucket(self) -> str:
        return f"{self.project}-quotestream-templates"

    @property
    def staging_bucket(self) -> str:
        return f"{self.project}-quotestream-staging"

    @property
    def secret(self) -> str:
        return self.settings.api_key_secret or "quotestream-relay-key"

    def environment_variables(self, api_url: str) -> dict[str, str]:
        """The Composer environment's QUOTESTREAM_* settings that the bootstrap owns (a release
        adds the images and templates it made): among them every name it made something
        under, so that the DAGs find what it made and granted."""
        settings = self.settings
        values = {
            "QUOTESTREAM_TARGET": "gcp",
            "QUOTESTREAM_PROJECT": self.project,
            "QUOTESTREAM_REGION": self.region,
            "QUOTESTREAM_QUOTES_TOPIC": settings.quotes_topic,
            "QUOTESTREAM_LOAD_SUBSCRIPTION": settings.load_subscription,
            "QUOTESTREAM_ACK_DEADLINE_S": str(settings.ack_deadline_s),
            "QUOTESTREAM_DATASET": settings.dataset,
            "QUOTESTREAM_BIGQUERY_LOCATION": settings.bigquery_location,
            "QUOTESTREAM_API_URL": api_url,
            "QUOTESTREAM_API_SERVICE": settings.api_service,
            "QUOTESTREAM_API_SERVICE_ACCOUNT": self.api_account,
            "QUOTESTREAM_API_KEY_SECRET": self.secret,
            "QUOTESTREAM_DATAFLOW_SERVICE_ACCOUNT": self.workers_account,
            "QUOTESTREAM_DATAFLOW_TEMP_LOCATION": f"gs://{self.staging_bucket}/temp",
            "QUOTESTREAM_DATAFLOW_MAX_WORKERS": str(settings.dataflow_max_workers),
            "QUOTESTREAM_DATAFLOW_MACHINE_TYPE": settings.dataflow_machine_type,
            "QUOTESTREAM_MESSAGE_ORDERING": str(settings.message_ordering).lower(),
        }
        for field in ("network", "subnetwork"):
            if value := getattr(settings, f"dataflow_{field}"):
                values[f"QUOTESTREAM_DATAFLOW_{field.upper()}"] = value
        return values


@dataclass(frozen=True)
class Resource:
    kind: str  # project, bucket, repository, secret, account, topic, subscription, service,
    #            dataset
    name: str  # its id: a bucket's name, an account's email, ...


@dataclass(frozen=True)
class Grant:
    member: str
    role: str
    on: Resource
    why: str


def grants(layout: Layout, composer_agent: str) -> list[Grant]:
    """Every role, on the narrowest resource Google allows it on. On the project only roles
    whose lowest level is the project: roles/dataflow.worker, roles/composer.worker (Google
    requires both project-wide), roles/viewer (Google's "Run a Flex Template" asks it of the
    launcher and worker account), roles/dataflow.developer, roles/bigquery.jobUser and the
    Monitoring roles (Dataflow jobs, BigQuery jobs, alert policies and dashboards are project
    resources). None of these roles can change the IAM of a topic, a subscription, a service,
    a secret or a bucket; roles/composer.worker, which Google requires, carries Artifact
    Registry's repository IAM and (like objectAdmin) object ACLs, which both buckets' uniform
    bucket-level access turns off."""
    settings = layout.settings
    workers = f"serviceAccount:{layout.workers_account}"
    api = f"serviceAccount:{layout.api_account}"
    composer = f"serviceAccount:{layout.composer_account}"
    project = Resource("project", layout.project)
    topic = Resource("topic", settings.quotes_topic)
    subscription = Resource("subscription", settings.load_subscription)
    service = Resource("service", settings.api_service)
    dataset = Resource("dataset", settings.dataset)
    secret = Resource("secret", layout.secret)
    listed = [
        Grant(workers, "roles/dataflow.worker", project, "runs Dataflow work items"),
        Grant(workers, "roles/viewer", project, "Google's Run a Flex Template page asks it"),
        Grant(workers, "roles/bigquery.jobUser", project, "the load queries the ids it stored"),
        Grant(
            workers,
            "roles/storage.objectAdmin",
            Resource("bucket", layout.staging_bucket),
            "stages and writes temporary files; nothing on the templates bucket",
        ),
        Grant(
            workers,
            "roles/artifactregistry.reader",
            Resource("repository", layout.docker_repository),
            "pulls the launcher and worker image",
        ),
        Grant(workers, "roles/bigquery.dataEditor", dataset, "writes quotes, bars, dead letters"),
        Grant(workers, "roles/pubsub.subscriber", subscription, "the load reads quotes-load"),
        Grant(workers, "roles/pubsub.publisher", topic, "the extract publishes quotes"),
        Grant(workers, "roles/run.invoker", service, "the extract polls the API"),
        Grant(api, "roles/pubsub.publisher", topic, "the push relay publishes quotes"),
        Grant(api, "roles/pubsub.viewer", topic, "the relay's readiness looks the topic up"),
        Grant(api, "roles/secretmanager.secretAccessor", secret, "Cloud Run mounts the key"),
        Grant(composer, "roles/composer.worker", project, "Google requires it of the account"),
        Grant(composer, "roles/dataflow.developer", project, "launches, drains, cancels jobs"),
        Grant(composer, "roles/bigquery.jobUser", project, "the DAGs' queries"),
        Grant(
            composer,
            "roles/monitoring.alertPolicyEditor",
            project,
            "provisioning creates and updates the alert policies",
        ),
        Grant(
            composer,
            "roles/monitoring.dashboardEditor",
            project,
            "provisioning creates and updates the dashboard",
        ),
        Grant(
            composer,
            "roles/iam.serviceAccountUser",
            Resource("account", layout.workers_account),
            "jobs run as the workers' account",
        ),
        Grant(
            composer,
            "roles/iam.serviceAccountUser",
            Resource("account", layout.api_account),
            "the API's revisions run as its account",
        ),
        Grant(composer, "roles/run.developer", service, "deploys the API's revisions"),
        Grant(composer, "roles/run.invoker", service, "smoke test, backfill, reconciliation"),
        Grant(
            composer,
            "roles/secretmanager.viewer",
            secret,
            "the deploy checks the key's latest version (metadata only)",
        ),
        Grant(composer, "roles/bigquery.dataEditor", dataset, "provisions tables, backfills"),
        Grant(
            composer,
            "roles/artifactregistry.reader",
            Resource("repository", layout.python_repository),
            "the environment installs the quotestream wheel from it",
        ),
        Grant(
            composer_agent,
            "roles/composer.ServiceAgentV2Ext",
            Resource("account", layout.composer_account),
            "Composer runs the environment as this account",
        ),
    ]
    listed += [
        Grant(member, "roles/run.invoker", service, "named in QUOTESTREAM_API_INVOKERS")
        for member in settings.api_invokers
    ]
    return listed


def iam_name(layout: Layout, resource: Resource) -> str:
    """The resource's full name in IAM."""
    project, region = layout.project, layout.region
    return {
        "project": f"projects/{project}",
        "bucket": f"projects/_/buckets/{resource.name}",
        "repository": f"projects/{project}/locations/{region}/repositories/{resource.name}",
        "secret": f"projects/{project}/secrets/{resource.name}",
        "account": f"projects/{project}/serviceAccounts/{resource.name}",
        "topic": f"projects/{project}/topics/{resource.name}",
        "subscription": f"projects/{project}/subscriptions/{resource.name}",
        "service": f"projects/{project}/locations/{region}/services/{resource.name}",
        "dataset": f"projects/{project}/datasets/{resource.name}",
    }[resource.kind]


def _policy_command(layout: Layout, resource: Resource, verb: str) -> list[str]:
    """`verb` is add-iam-policy-binding or get-iam-policy, for the resource's own command."""
    project = f"--project={layout.project}"
    where = [f"--location={layout.region}", project]
    if resource.kind == "dataset":
        return ["bq", verb, f"{layout.project}:{resource.name}"]
    group = {
        "project": ["projects"],
        "bucket": ["storage", "buckets"],
        "repository": ["artifacts", "repositories"],
        "secret": ["secrets"],
        "account": ["iam", "service-accounts"],
        "topic": ["pubsub", "topics"],
        "subscription": ["pubsub", "subscriptions"],
        "service": ["run", "services"],
    }[resource.kind]
    name = f"gs://{resource.name}" if resource.kind == "bucket" else resource.name
    flags = {
        "project": [],
        "bucket": [],
        "repository": where,
        "service": [f"--region={layout.region}", project],
    }.get(resource.kind, [project])
    return ["gcloud", *group, verb, name, *flags]


def grant_step(layout: Layout, grant: Grant, policies: PolicyReader) -> Step:
    command = _policy_command(layout, grant.on, "add-iam-policy-binding")
    binding = [f"--member={grant.member}", f"--role={grant.role}"]
    if grant.on.kind == "dataset":  # bq takes its flags before the dataset
        command = [*command[:2], *binding, command[2]]
    else:
        command += binding
    if grant.on.kind == "project":
        command.append("--condition=None")  # else gcloud asks when a policy has conditions
    return Step(
        f"{grant.role} to {grant.member} on {grant.on.kind} {grant.on.name}",
        grant.why,
        tuple(command),
        done=lambda shell: policies.binds(shell, grant),
    )


class PolicyReader:
    """Each resource's IAM policy, read once a run (and read again once a step changed it)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._read: dict[Resource, dict[str, set[str]]] = {}

    def binds(self, shell: Shell, grant: Grant) -> bool:
        if grant.on not in self._read:
            self._read[grant.on] = self._bindings(shell, grant.on)
        bound = grant.member in self._read[grant.on].get(grant.role, set())
        if not bound:
            del self._read[grant.on]  # the step will change it
        return bound

    def _bindings(self, shell: Shell, resource: Resource) -> dict[str, set[str]]:
        command = _policy_command(self._layout, resource, "get-iam-policy")
        if resource.kind == "dataset":
            command = [*command[:2], "--format=prettyjson", command[2]]
        else:
            command.append("--format=json")
        read = shell.output(command)
        if read is None:
            return {}  # the resource is not there yet (a dry run on an empty project)
        policy = json.loads(read or "{}")
        return {
            binding["role"]: set(binding.get("members", []))
            for binding in policy.get("bindings", [])
            if "condition" not in binding  # a conditional binding grants less than the role
        }


def steps(layout: Layout, composer_image_version: str, shell: Shell) -> Iterator[Step]:
    """In order, each built when the ones before it have run (a later one may read what an
    earlier one made: the API's URL, once its service exists)."""
    project, region = layout.project, layout.region
    in_project = f"--project={project}"
    yield Step(
        f"{len(APIS)} APIs",
        "what quotestream calls (enabling an enabled API changes nothing)",
        ("gcloud", "services", "enable", *(f"{api}.googleapis.com" for api in APIS), in_project),
        done=lambda shell: _enabled(shell, project) >= {f"{api}.googleapis.com" for api in APIS},
    )
    for component, title in (
        ("api", "quotestream API (Cloud Run)"),
        ("dataflow", "quotestream Dataflow launcher and workers"),
        ("composer", "quotestream Composer environment (the DAGs)"),
    ):
        email = layout.account(component)
        yield Step(
            f"service account {email}",
            "one account per component, each with its own roles",
            (
                "gcloud",
                "iam",
                "service-accounts",
                "create",
                f"quotestream-{component}",
                f"--display-name={title}",
                in_project,
            ),
            done=succeeds("gcloud", "iam", "service-accounts", "describe", email, in_project),
        )
    for name, kind, extra in (
        (layout.docker_repository, "docker", ("--immutable-tags",)),
        (layout.python_repository, "python", ()),
    ):
        yield Step(
            f"{kind} repository {name}",
            "the release's images, tags immutable"
            if kind == "docker"
            else "the core's wheel, which Composer installs",
            (
                "gcloud",
                "artifacts",
                "repositories",
                "create",
                name,
                f"--repository-format={kind}",
                f"--location={region}",
                in_project,
                *extra,
            ),
            done=succeeds(
                "gcloud",
                "artifacts",
                "repositories",
                "describe",
                name,
                f"--location={region}",
                in_project,
            ),
        )
    for bucket, why in (
        (layout.templates_bucket, "flex-template specs, written by releases only"),
        (layout.staging_bucket, "Dataflow's staging and temporary files"),
    ):
        yield Step(
            f"bucket gs://{bucket}",
            why,
            (
                "gcloud",
                "storage",
                "buckets",
                "create",
                f"gs://{bucket}",
                f"--location={region}",
                in_project,
                "--uniform-bucket-level-access",
                "--public-access-prevention",
            ),
            done=succeeds("gcloud", "storage", "buckets", "describe", f"gs://{bucket}"),
        )
    secret = layout.secret
    yield Step(
        f"secret {secret}",
        "the push relay's key, which Cloud Run mounts",
        ("gcloud", "secrets", "create", secret, "--replication-policy=automatic", in_project),
        done=succeeds("gcloud", "secrets", "describe", secret, in_project),
    )
    yield Step(
        f"the first version of secret {secret}",
        "a random key, read from stdin: never printed, never on a command line",
        ("gcloud", "secrets", "versions", "add", secret, "--data-file=-", in_project),
        done=succeeds(
            "gcloud", "secrets", "versions", "describe", "latest", f"--secret={secret}", in_project
        ),
        reads_a_secret=True,
    )
    yield from _owned_resources(layout)
    agent = _composer_agent(layout, shell)
    reader = PolicyReader(layout)
    for grant in grants(layout, agent):
        yield grant_step(layout, grant, reader)
    yield from _composer_environment(layout, composer_image_version, shell)


def _enabled(shell: Shell, project: str) -> set[str]:
    command = ["gcloud", "services", "list", "--enabled", f"--project={project}"]
    command.append("--format=value(config.name)")
    return set((shell.output(command) or "").split())


def _owned_resources(layout: Layout) -> Iterator[Step]:
    """What quotestream owns and the grants are bound on, made as provisioning and the deploy
    would make it: provisioning then finds them as it wants them."""
    settings = layout.settings
    in_project = f"--project={layout.project}"
    spec = load_subscription(settings)
    yield Step(
        f"topic {spec.topic}",
        "the roles on it are granted on it",
        ("gcloud", "pubsub", "topics", "create", spec.topic, in_project),
        done=succeeds("gcloud", "pubsub", "topics", "describe", spec.topic, in_project),
    )
    ordering = ("--enable-message-ordering",) if spec.ordered else ()
    yield Step(
        f"subscription {spec.name}",
        "the roles on it are granted on it; Dataflow reads it, so no dead-letter policy",
        (
            "gcloud",
            "pubsub",
            "subscriptions",
            "create",
            spec.name,
            f"--topic={spec.topic}",
            f"--ack-deadline={spec.ack_deadline_s}",
            f"--message-retention-duration={spec.retention_s}s",
            "--expiration-period=never",
            *ordering,
            in_project,
        ),
        done=succeeds("gcloud", "pubsub", "subscriptions", "describe", spec.name, in_project),
    )
    dataset = f"{layout.project}:{settings.dataset}"
    yield Step(
        f"dataset {settings.dataset}",
        "the roles on it are granted on it",
        (
            "bq",
            f"--project_id={layout.project}",
            "mk",
            "--dataset",
            f"--location={settings.bigquery_location}",
            dataset,
        ),
        done=succeeds("bq", f"--project_id={layout.project}", "show", "--dataset", dataset),
    )
    yield Step(
        f"Cloud Run service {settings.api_service}",
        "private, from Google's sample image until quotestream_deploy_api replaces it: the "
        "invoker roles are granted on it",
        (
            "gcloud",
            "run",
            "deploy",
            settings.api_service,
            f"--image={PLACEHOLDER_IMAGE}",
            f"--region={layout.region}",
            in_project,
            f"--service-account={layout.api_account}",
            "--no-allow-unauthenticated",
        ),
        done=succeeds(
            "gcloud",
            "run",
            "services",
            "describe",
            settings.api_service,
            f"--region={layout.region}",
            in_project,
        ),
    )


def _composer_agent(layout: Layout, shell: Shell) -> str:
    command = ["gcloud", "projects", "describe", layout.project, "--format=value(projectNumber)"]
    number = shell.output(command) or PROJECT_NUMBER_UNKNOWN
    return f"serviceAccount:service-{number}@cloudcomposer-accounts.iam.gserviceaccount.com"


def _composer_environment(
    layout: Layout, composer_image_version: str, shell: Shell
) -> Iterator[Step]:
    in_project = f"--project={layout.project}"
    where = [layout.environment, f"--location={layout.region}", in_project]
    url = [
        "gcloud",
        "run",
        "services",
        "describe",
        layout.settings.api_service,
        f"--region={layout.region}",
        in_project,
        "--format=value(status.url)",
    ]
    api_url = shell.output(url) or API_URL_UNKNOWN
    wanted = layout.environment_variables(api_url)
    describe = ["gcloud", "composer", "environments", "describe", *where]
    describe.append("--format=json(config.softwareConfig.envVariables)")
    described = shell.output(describe)
    if described is None:
        yield Step(
            f"Composer environment {layout.environment}",
            f"Cloud Composer 3 at {composer_image_version}, as "
            f"{layout.composer_account}, quotestream's settings as its variables",
            (
                "gcloud",
                "composer",
                "environments",
                "create",
                *where,
                f"--image-version={composer_image_version}",
                f"--service-account={layout.composer_account}",
                "--environment-size=small",
                f"--env-variables={gcloud_dict(wanted)}",
            ),
        )
        return
    config = json.loads(described or "{}").get("config", {})
    current = (config.get("softwareConfig") or {}).get("envVariables") or {}
    changed = {key: value for key, value in wanted.items() if current.get(key) != value}
    yield Step(
        f"environment variables of {layout.environment}",
        "quotestream's settings (Composer refuses an update that changes nothing)",
        (
            "gcloud",
            "composer",
            "environments",
            "update",
            *where,
            f"--update-env-variables={gcloud_dict(changed or wanted)}",
        ),
        done=lambda shell: not changed,
    )


def bootstrap(layout: Layout, composer_image_version: str, repo_root: Path, dry_run: bool) -> int:
    if not COMPOSER_IMAGE_VERSION.fullmatch(composer_image_version):
        raise ValueError(
            f"--composer-image-version {composer_image_version!r} is not a pinned "
            "Composer 3 build (composer-3-airflow-X.Y.Z-build.N)"
        )
    print(f"bootstrapping project {layout.project} in {layout.region}")
    shell = Shell(repo_root, layout.project)
    changed = carry_out(steps(layout, composer_image_version, shell), shell, dry_run)
    verb = "would change" if dry_run else "changed"
    print(f"{verb} {changed} things; the release goes to {layout.registry}")
    return 0
