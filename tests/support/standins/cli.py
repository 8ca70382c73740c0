"""`gcloud`, `bq`, `docker` and `uv` as the bootstrap, the release and `composer deploy` call
them, for one stand-in project: small executables on PATH (`install`) send each call to the
stand-ins' server, which records it and carries it out on the stand-ins' state as the real tool
would on Google's (a grant binds a role in the shared IAM, a flex-template build writes its spec
to the Storage stand-in, a push puts an image in the registry, a topic is created in the Pub/Sub
emulator), and answers with the tool's output and exit status. What they do not know they
refuse, so a command nobody modelled cannot pass for one that worked.

The tools act as the project's administrator (roles/owner), through the stand-ins' own API
methods, so their calls are checked too. Cloud Build runs its config's steps here, in order, as
the same administrator (the real one runs them as Cloud Build's service account)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body

from tests.support.standins.artifact_registry import PushRefused
from tests.support.standins.dataflow import flex_template_spec
from tests.support.standins.permissions import OWNER
from tests.support.standins.storage import StorageError
from tests.support.standins.wire import ApiError

if TYPE_CHECKING:
    from tests.support.standins.google_apis import GoogleApis

ADMIN = "admin@example.com"
# Flags that take no value (every other flag written apart from its value takes the next word).
_SWITCHES = {
    "--dataset",
    "--enable-message-ordering",
    "--enabled",
    "--immutable-tags",
    "--no-allow-unauthenticated",
    "--public-access-prevention",
    "--uniform-bucket-level-access",
    "--wheel",  # uv build's
}


class Refused(Exception):
    """The tool fails with this message on stderr (exit 1)."""


@dataclass(frozen=True)
class Invocation:
    program: str
    argv: tuple[str, ...]

    @property
    def line(self) -> str:
        return shlex.join((self.program, *self.argv))


@dataclass
class Words:
    """A command line: its positional words and its flags."""

    positional: list[str]
    flags: dict[str, str | bool]

    @classmethod
    def of(cls, argv: Sequence[str]) -> Words:
        positional: list[str] = []
        flags: dict[str, str | bool] = {}
        words = iter(argv)
        for word in words:
            if not word.startswith("--"):
                positional.append(word)
            elif "=" in word:
                name, value = word.split("=", 1)
                flags[name] = value
            elif word in _SWITCHES:
                flags[word] = True
            else:
                flags[word] = next(words)
        return cls(positional, flags)

    def flag(self, name: str, default: str | None = None) -> str:
        value = self.flags.get(name, default)
        if not isinstance(value, str):
            raise Refused(f"ERROR: argument {name} is required")
        return value


@dataclass
class Environment:
    name: str
    location: str
    image_version: str
    service_account: str
    bucket: str
    variables: dict[str, str]
    packages: dict[str, str] = field(default_factory=dict)
    dags: dict[str, str] = field(default_factory=dict)

    def described(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": {
                "softwareConfig": {
                    "imageVersion": self.image_version,
                    "envVariables": self.variables,
                    "pypiPackages": self.packages,
                },
                "nodeConfig": {"serviceAccount": self.service_account},
                "dagGcsPrefix": f"gs://{self.bucket}/dags",
            },
        }


def dict_flag(text: str) -> dict[str, str]:
    """A gcloud dict flag, with its `^D^` delimiter escape."""
    delimiter = ","
    if text.startswith("^"):
        delimiter, text = text[1], text[3:]
    return dict(item.split("=", 1) for item in text.split(delimiter) if item)


class CliStandIn:
    def __init__(self, apis: GoogleApis) -> None:
        self._apis = apis
        self._lock = threading.RLock()
        self.project = "standin-project"
        self.calls: list[Invocation] = []
        self.services: set[str] = set()
        self.accounts: set[str] = set()
        self.secrets: set[str] = set()
        self.environments: dict[str, Environment] = {}
        self.built: dict[str, str] = {}  # image -> digest, of the local docker
        self.published: list[str] = []  # files uv published
        self._pubsub: tuple[Any, Any] | None = None

    def reset(self, project: str = "standin-project") -> None:
        """An empty project `project`, which the administrator owns."""
        with self._lock:
            self._apis.grants.revoke(f"projects/{self.project}", OWNER, f"user:{ADMIN}")
            self.project = project
            self.calls.clear()
            self.services.clear()
            self.accounts.clear()
            self.secrets.clear()
            self.environments.clear()
            self.built.clear()
            self.published.clear()
        self._apis.grants.grant(f"projects/{project}", OWNER, f"user:{ADMIN}")

    @property
    def number(self) -> str:
        return str(10**11 + int(hashlib.sha256(self.project.encode()).hexdigest(), 16) % 10**11)

    def lines(self, program: str | None = None) -> list[str]:
        """The calls, as command lines, of one program or all."""
        with self._lock:
            return [c.line for c in self.calls if program is None or c.program == program]

    # Running one call.

    def run(self, program: str, argv: Sequence[str], cwd: str, stdin: str | None) -> dict[str, Any]:
        with self._lock:
            self.calls.append(Invocation(program, tuple(argv)))
        handler: dict[str, Callable[[list[str], Path, str | None], str]] = {
            "gcloud": self._gcloud,
            "bq": self._bq,
            "docker": self._docker,
            "uv": self._uv,
        }
        try:
            stdout = handler[program](list(argv), Path(cwd), stdin)
        except (Refused, StorageError, PushRefused) as error:
            return {"code": 1, "stdout": "", "stderr": f"{error}\n"}
        except ApiError as error:
            return {"code": 1, "stdout": "", "stderr": f"ERROR: {error.status}: {error.message}\n"}
        return {"code": 0, "stdout": stdout, "stderr": ""}

    @property
    def admin_authorization(self) -> str:
        """An authorization header of the project's administrator."""
        return f"Bearer {self._apis.oauth.access_token(ADMIN)['access_token']}"

    def _gcloud(self, argv: list[str], cwd: Path, stdin: str | None) -> str:
        words = Words.of(argv)
        project = words.flag("--project", self.project)
        if project != self.project:
            raise Refused(f"ERROR: (gcloud) the stand-in has project {self.project}, not {project}")
        command = tuple(words.positional)
        for size in (5, 4, 3, 2):
            handler = _GCLOUD.get(command[:size])
            if handler is not None:
                return handler(self, words, list(command[size:]), cwd, stdin)
        raise Refused(f"ERROR: (gcloud) the stand-in does not know `gcloud {' '.join(argv)}`")

    # gcloud: services, accounts, repositories, buckets, objects, secrets

    def _enable(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        self.services.update(names)
        return ""

    def _enabled(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        return "\n".join(sorted(self.services))

    def _create_account(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        email = f"{names[0]}@{self.project}.iam.gserviceaccount.com"
        if email in self.accounts:
            raise Refused(f"ERROR: ALREADY_EXISTS: Service account {email} already exists")
        self.accounts.add(email)
        return ""

    def _describe_account(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        return self._found(names[0] in self.accounts, f"service account {names[0]}")

    def _create_repository(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        name = self._repository(words, names[0])
        self._apis.registry.create_repository(
            name, words.flag("--repository-format"), bool(words.flags.get("--immutable-tags"))
        )
        return ""

    def _describe_repository(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        name = self._repository(words, names[0])
        return self._found(name in self._apis.registry.repositories, name)

    def _describe_image(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        digest = self._apis.registry.digest_of(names[0])
        if digest is None:
            return self._missing(f"image {names[0]}")
        return json.dumps({"image_summary": {"digest": digest}})

    def _create_bucket(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        body = {"name": names[0].removeprefix("gs://"), "location": words.flag("--location")}
        self._apis.storage.api_create_bucket(self.admin_authorization, self.project, body)
        return ""

    def _describe_bucket(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        return json.dumps(
            self._apis.storage.api_get_bucket(self.admin_authorization, _bucket(names[0]))
        )

    def _describe_object(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        bucket, name = _gs(names[0])
        return json.dumps(self._apis.storage.api_object(self.admin_authorization, bucket, name)[1])

    def _copy(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        source, target = names
        bucket, name = _gs(target)
        data = (cwd / source).read_bytes()
        self._apis.storage.api_upload(self.admin_authorization, bucket, name, data, "text/plain")
        return ""

    def _create_secret(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        if names[0] in self.secrets:
            raise Refused(f"ERROR: ALREADY_EXISTS: Secret [{names[0]}] already exists")
        self.secrets.add(names[0])
        return ""

    def _describe_secret(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        return self._found(names[0] in self.secrets, f"secret {names[0]}")

    def _add_version(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        if words.flag("--data-file") != "-" or not stdin:
            raise Refused("ERROR: the stand-in takes a version's data on stdin only")
        if names[0] not in self.secrets:
            raise Refused(f"ERROR: NOT_FOUND: Secret [{names[0]}] not found")
        self._apis.secrets.add_version(names[0], stdin.encode())
        return ""

    def _describe_version(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        secret = words.flag("--secret")
        version = self._apis.secrets.get(self.project, secret, names[0], self.admin_authorization)
        return json.dumps(version)

    # gcloud: Pub/Sub (the emulator), Cloud Run, the project

    def _clients(self) -> tuple[Any, Any]:
        """The Pub/Sub emulator's publisher and subscriber clients (PUBSUB_EMULATOR_HOST)."""
        from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

        if self._pubsub is None:
            self._pubsub = (PublisherClient(), SubscriberClient())
        return self._pubsub

    def _create_topic(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        publisher, _ = self._clients()
        publisher.create_topic(name=f"projects/{self.project}/topics/{names[0]}")
        return ""

    def _describe_topic(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        from google.api_core.exceptions import NotFound

        publisher, _ = self._clients()
        try:
            publisher.get_topic(topic=f"projects/{self.project}/topics/{names[0]}")
        except NotFound:
            return self._missing(f"topic {names[0]}")
        return ""

    def _create_subscription(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        from datetime import timedelta

        from google.cloud.pubsub_v1 import types

        retention = int(words.flag("--message-retention-duration").removesuffix("s"))
        if words.flag("--expiration-period") != "never":
            raise Refused("ERROR: the stand-in makes subscriptions that never expire only")
        _, subscriber = self._clients()
        subscriber.create_subscription(
            request=types.Subscription(
                name=f"projects/{self.project}/subscriptions/{names[0]}",
                topic=f"projects/{self.project}/topics/{words.flag('--topic')}",
                ack_deadline_seconds=int(words.flag("--ack-deadline")),
                message_retention_duration=timedelta(seconds=retention),
                enable_message_ordering=bool(words.flags.get("--enable-message-ordering")),
                expiration_policy=types.ExpirationPolicy(ttl=None),
            )
        )
        return ""

    def _describe_subscription(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        from google.api_core.exceptions import NotFound

        _, subscriber = self._clients()
        name = f"projects/{self.project}/subscriptions/{names[0]}"
        try:
            subscriber.get_subscription(subscription=name)
        except NotFound:
            return self._missing(f"subscription {names[0]}")
        return ""

    def _run_deploy(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        if not words.flags.get("--no-allow-unauthenticated"):
            raise Refused("ERROR: the stand-in deploys private services only")
        parent = f"projects/{self.project}/locations/{words.flag('--region')}"
        body = {
            "template": {
                "serviceAccount": words.flag("--service-account"),
                "containers": [{"image": words.flag("--image")}],
            }
        }
        self._apis.run.create(parent, {"serviceId": names[0]}, body, self.admin_authorization)
        return ""

    def _describe_service(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        service = self._apis.run.get(self._service(words, names[0]), self.admin_authorization)
        if words.flags.get("--format") == "value(status.url)":
            return str(service["uri"])
        return json.dumps(service)

    def _describe_project(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        if words.flags.get("--format") != "value(projectNumber)":
            raise Refused("ERROR: the stand-in describes a project's number only")
        return self.number

    # gcloud: IAM policies of every kind of resource

    def _iam_name(self, group: tuple[str, ...], words: Words, name: str) -> str:
        project = f"projects/{self.project}"
        if group == ("projects",):
            return project
        if group == ("storage", "buckets"):
            return f"projects/_/buckets/{_bucket(name)}"
        if group == ("artifacts", "repositories"):
            return self._repository(words, name)
        if group == ("run", "services"):
            return self._service(words, name)
        kind = {
            ("secrets",): "secrets",
            ("iam", "service-accounts"): "serviceAccounts",
            ("pubsub", "topics"): "topics",
            ("pubsub", "subscriptions"): "subscriptions",
        }[group]
        return f"{project}/{kind}/{name}"

    def policy(self, resource: str) -> dict[str, Any]:
        roles = self._apis.grants.bindings().get(resource, {})
        bindings = [{"role": role, "members": sorted(roles[role])} for role in sorted(roles)]
        return {"bindings": bindings, "etag": "BwStandIn", "version": 1}

    def _get_policy(self, group: tuple[str, ...]) -> Callable[..., str]:
        def get(words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
            return json.dumps(self.policy(self._iam_name(group, words, names[0])))

        return get

    def _add_binding(self, group: tuple[str, ...]) -> Callable[..., str]:
        def add(words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
            resource = self._iam_name(group, words, names[0])
            self._require_resource(group, words, names[0])
            try:
                self._apis.grants.grant(resource, words.flag("--role"), words.flag("--member"))
            except ValueError as unknown:
                raise Refused(f"ERROR: INVALID_ARGUMENT: {unknown}") from None
            return json.dumps(self.policy(resource))

        return add

    def _require_resource(self, group: tuple[str, ...], words: Words, name: str) -> None:
        present = {
            ("projects",): lambda: name == self.project,
            ("storage", "buckets"): lambda: _bucket(name) in self._apis.storage.buckets,
            ("artifacts", "repositories"): lambda: (
                self._repository(words, name) in self._apis.registry.repositories
            ),
            ("run", "services"): lambda: self._service(words, name) in self._apis.run.services,
            ("secrets",): lambda: name in self.secrets,
            ("iam", "service-accounts"): lambda: name in self.accounts,
            ("pubsub", "topics"): lambda: not self._describe_topic(words, [name], Path(), None),
            ("pubsub", "subscriptions"): lambda: (
                not self._describe_subscription(words, [name], Path(), None)
            ),
        }[group]
        try:
            found = present()
        except Refused:
            found = False
        if not found:
            raise Refused(f"ERROR: NOT_FOUND: {' '.join(group)} {name} does not exist")

    # gcloud: Composer

    def _create_environment(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        name, location = names[0], words.flag("--location")
        if name in self.environments:
            raise Refused(f"ERROR: ALREADY_EXISTS: environment {name} already exists")
        account = words.flag("--service-account")
        # Composer checks its account's role before it creates anything.
        roles = self._apis.grants.roles_of(
            f"serviceAccount:{account}", [f"projects/{self.project}"]
        )
        if "roles/composer.worker" not in roles:
            raise Refused(
                f"ERROR: FAILED_PRECONDITION: {account} lacks roles/composer.worker on the project"
            )
        bucket = f"{location}-{name}-standin-bucket"
        self._apis.storage.create_bucket(bucket, self.project)
        self.environments[name] = Environment(
            name,
            location,
            words.flag("--image-version"),
            account,
            bucket,
            dict_flag(words.flag("--env-variables")),
        )
        return ""

    def _environment(self, words: Words, name: str) -> Environment:
        environment = self.environments.get(name)
        if environment is None or environment.location != words.flag("--location"):
            raise Refused(f"ERROR: NOT_FOUND: environment {name} not found")
        return environment

    def _describe_environment(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        return json.dumps(self._environment(words, names[0]).described())

    def _update_environment(
        self, words: Words, names: list[str], cwd: Path, stdin: str | None
    ) -> str:
        environment = self._environment(words, names[0])
        if "--update-env-variables" in words.flags:
            changes = dict_flag(words.flag("--update-env-variables"))
            if all(environment.variables.get(k) == v for k, v in changes.items()):
                raise Refused("ERROR: INVALID_ARGUMENT: No change in configuration.")
            environment.variables.update(changes)
        elif "--update-pypi-packages-from-file" in words.flags:
            lines = (cwd / words.flag("--update-pypi-packages-from-file")).read_text()
            for line in lines.splitlines():
                if line.strip() and not line.startswith("#"):
                    name, _, version = line.partition("==")
                    environment.packages[name] = f"=={version}"
        else:
            raise Refused("ERROR: the stand-in updates variables and PyPI packages only")
        return ""

    def _import_dags(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        environment = self._environment(words, words.flag("--environment"))
        source = cwd / words.flag("--source")
        environment.dags[source.name] = source.read_text()
        return ""

    # gcloud: tokens, Dataflow's spec builds, Cloud Build

    def _access_token(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        return self.admin_authorization.removeprefix("Bearer ")

    def _build_spec(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        if words.flag("--sdk-language") != "PYTHON":
            raise Refused("ERROR: the stand-in builds Python flex templates only")
        metadata = json.loads((cwd / words.flag("--metadata-file")).read_text())
        spec = json.dumps(flex_template_spec(words.flag("--image"), metadata), indent=2)
        bucket, name = _gs(names[0])
        self._apis.storage.api_upload(
            self.admin_authorization, bucket, name, spec.encode(), "application/json"
        )
        return f"Template File GCS Location: {names[0]}\n"

    def _submit_build(self, words: Words, names: list[str], cwd: Path, stdin: str | None) -> str:
        from quotestream.entrypoints.cloud_build import build_steps

        values = dict_flag(words.flag("--substitutions")) | {"PROJECT_ID": self.project}
        source = cwd / names[0]
        config = words.flag("--config")
        if config != "cloudbuild.json":
            raise Refused(f"ERROR: the stand-in builds cloudbuild.json, not {config}")
        for step in build_steps(source, values):
            program, *argv = step.command
            answer = self.run(program, argv, str(source), None)
            if answer["code"]:
                raise Refused(f"ERROR: build step {step.id} failed: {answer['stderr'].strip()}")
        return ""

    # bq, docker, uv

    def _bq(self, argv: list[str], cwd: Path, stdin: str | None) -> str:
        words = Words.of(argv)
        verb, *rest = words.positional
        (dataset,) = rest
        project, name = dataset.split(":")
        resource = f"projects/{project}/datasets/{name}"
        if verb == "mk" and words.flags.get("--dataset"):
            self._bigquery(project).create_dataset(name)
            return f"Dataset '{dataset}' successfully created."
        if verb == "show" and words.flags.get("--dataset"):
            from google.api_core.exceptions import NotFound

            try:
                self._bigquery(project).get_dataset(name)
            except NotFound:
                return self._missing(f"dataset {dataset}")
            return ""
        if verb == "get-iam-policy":
            return json.dumps(self.policy(resource))
        if verb == "add-iam-policy-binding":
            self._apis.grants.grant(resource, words.flag("--role"), words.flag("--member"))
            return json.dumps(self.policy(resource))
        raise Refused(f"BigQuery error: the stand-in does not know `bq {' '.join(argv)}`")

    @staticmethod
    def _bigquery(project: str) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": os.environ["BIGQUERY_EMULATOR_HOST"]},
        )

    def _docker(self, argv: list[str], cwd: Path, stdin: str | None) -> str:
        words = Words.of(argv)
        if words.positional[0] == "build":
            dockerfile = cwd / (argv[argv.index("-f") + 1] if "-f" in argv else "Dockerfile")
            image = argv[argv.index("-t") + 1]
            content = dockerfile.read_bytes() + " ".join(argv).encode()
            self.built[image] = f"sha256:{hashlib.sha256(content).hexdigest()}"
            return ""
        if words.positional[0] == "push":
            image = words.positional[1]
            if image not in self.built:
                raise Refused(f"An image does not exist locally with the tag: {image}")
            self._apis.registry.push(image, self.built[image])
            return ""
        raise Refused(f"docker: the stand-in does not know `docker {' '.join(argv)}`")

    def _uv(self, argv: list[str], cwd: Path, stdin: str | None) -> str:
        if argv[:1] == ["build"]:
            return ""
        if argv[:1] == ["publish"]:
            self.published.append(argv[-1])
            return ""
        raise Refused(f"uv: the stand-in does not know `uv {' '.join(argv)}`")

    # helpers

    def _repository(self, words: Words, name: str) -> str:
        return f"projects/{self.project}/locations/{words.flag('--location')}/repositories/{name}"

    def _service(self, words: Words, name: str) -> str:
        return f"projects/{self.project}/locations/{words.flag('--region')}/services/{name}"

    def _found(self, present: bool, what: str) -> str:
        return "" if present else self._missing(what)

    @staticmethod
    def _missing(what: str) -> str:
        raise Refused(f"ERROR: NOT_FOUND: {what} was not found")  # as gcloud fails: exit 1


def _gs(path: str) -> tuple[str, str]:
    bucket, name = path.removeprefix("gs://").split("/", 1)
    return bucket, name


def _bucket(name: str) -> str:
    return name.removeprefix("gs://").rstrip("/")


def _iam_handlers() -> dict[tuple[str, ...], Callable[..., str]]:
    handlers: dict[tuple[str, ...], Callable[..., str]] = {}
    for group in (
        ("projects",),
        ("storage", "buckets"),
        ("artifacts", "repositories"),
        ("run", "services"),
        ("secrets",),
        ("iam", "service-accounts"),
        ("pubsub", "topics"),
        ("pubsub", "subscriptions"),
    ):
        handlers[(*group, "get-iam-policy")] = lambda cli, *a, g=group: cli._get_policy(g)(*a)
        handlers[(*group, "add-iam-policy-binding")] = lambda cli, *a, g=group: cli._add_binding(g)(
            *a
        )
    return handlers


_GCLOUD: dict[tuple[str, ...], Callable[..., str]] = {
    ("services", "enable"): CliStandIn._enable,
    ("services", "list"): CliStandIn._enabled,
    ("iam", "service-accounts", "create"): CliStandIn._create_account,
    ("iam", "service-accounts", "describe"): CliStandIn._describe_account,
    ("artifacts", "repositories", "create"): CliStandIn._create_repository,
    ("artifacts", "repositories", "describe"): CliStandIn._describe_repository,
    ("artifacts", "docker", "images", "describe"): CliStandIn._describe_image,
    ("storage", "buckets", "create"): CliStandIn._create_bucket,
    ("storage", "buckets", "describe"): CliStandIn._describe_bucket,
    ("storage", "objects", "describe"): CliStandIn._describe_object,
    ("storage", "cp"): CliStandIn._copy,
    ("secrets", "create"): CliStandIn._create_secret,
    ("secrets", "describe"): CliStandIn._describe_secret,
    ("secrets", "versions", "add"): CliStandIn._add_version,
    ("secrets", "versions", "describe"): CliStandIn._describe_version,
    ("pubsub", "topics", "create"): CliStandIn._create_topic,
    ("pubsub", "topics", "describe"): CliStandIn._describe_topic,
    ("pubsub", "subscriptions", "create"): CliStandIn._create_subscription,
    ("pubsub", "subscriptions", "describe"): CliStandIn._describe_subscription,
    ("run", "deploy"): CliStandIn._run_deploy,
    ("run", "services", "describe"): CliStandIn._describe_service,
    ("projects", "describe"): CliStandIn._describe_project,
    ("composer", "environments", "create"): CliStandIn._create_environment,
    ("composer", "environments", "describe"): CliStandIn._describe_environment,
    ("composer", "environments", "update"): CliStandIn._update_environment,
    ("composer", "environments", "storage", "dags", "import"): CliStandIn._import_dags,
    ("auth", "print-access-token"): CliStandIn._access_token,
    ("dataflow", "flex-template", "build"): CliStandIn._build_spec,
    ("builds", "submit"): CliStandIn._submit_build,
    **_iam_handlers(),
}

_SCRIPT = """#!{python} -IS
# A stand-in of `{program}`: the call goes to the stand-ins, which answer as the tool would.
import json, os, sys, urllib.request
argv = sys.argv[1:]
stdin = sys.stdin.read() if "--data-file=-" in argv else None
body = json.dumps({{"program": "{program}", "argv": argv, "cwd": os.getcwd(), "stdin": stdin}})
request = urllib.request.Request("{url}/_standin/cli", data=body.encode(),
                                 headers={{"content-type": "application/json"}})
answer = json.load(urllib.request.urlopen(request, timeout=120))
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.exit(answer["code"])
"""


def install(bin_dir: Path, url: str) -> dict[str, str]:
    """The four tools in `bin_dir`; the environment that puts them first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for program in ("gcloud", "bq", "docker", "uv"):
        script = bin_dir / program
        script.write_text(_SCRIPT.format(python=sys.executable, program=program, url=url))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "UV": str(bin_dir / "uv"),
    }


def router(cli: CliStandIn) -> APIRouter:
    api = APIRouter()

    @api.post("/_standin/cli")
    async def run(body: dict[str, Any] = Body()) -> dict[str, Any]:  # noqa: B008
        import asyncio

        # The tools may call back into this server (a build's steps, the emulators' clients):
        # off the event loop.
        return await asyncio.to_thread(
            cli.run, body["program"], body["argv"], body["cwd"], body.get("stdin")
        )

    return api
