"""The ServiceDeployer on Cloud Run: create-or-update of the API service (the google provider
has no operator that updates a service). The service is private; who may invoke it is granted
on the service by `quotestream gcp bootstrap`, never here: the deploying account cannot change
the service's IAM, so no DAG can make the API public."""

from __future__ import annotations

import time
from collections.abc import Mapping

from google.api_core.exceptions import NotFound
from google.cloud import run_v2, secretmanager_v1

from quotestream.adapters.gcp.access import DEFAULT_ACCESS, ApiAccess
from quotestream.ports.resources import Outcome, ResourceResult

_DEPLOY_TIMEOUT_S = 900


class CloudRunDeployer:
    def __init__(
        self,
        project: str,
        region: str,
        service: str,
        image: str,
        env: Mapping[str, str],
        *,
        service_account: str = "",
        api_key_secret: str = "",
        access: ApiAccess = DEFAULT_ACCESS,
        secrets_access: ApiAccess = DEFAULT_ACCESS,
        poll_s: float = 2.0,
    ) -> None:
        self._project = project
        self._parent = f"projects/{project}/locations/{region}"
        self._name = f"{self._parent}/services/{service}"
        self._service_id = service
        self._image = image
        self._env = dict(env)
        self._service_account = service_account
        self._api_key_secret = api_key_secret
        self._client = run_v2.ServicesClient(**access.client_kwargs())
        self._credentials = access.credentials
        self._secrets_access = secrets_access
        self._poll_s = poll_s

    def deploy(self) -> list[ResourceResult]:
        self._check_relay_key()
        wanted = self._service()
        try:
            self._client.get_service(name=self._name)
        except NotFound:
            self._client.create_service(
                parent=self._parent, service=wanted, service_id=self._service_id
            )
            deployed = ResourceResult("cloud run service", self._service_id, Outcome.CREATED)
        else:
            wanted.name = self._name
            self._client.update_service(service=wanted)
            deployed = ResourceResult(
                "cloud run service", self._service_id, Outcome.UPDATED, self._image
            )
        self._await_ready()
        return [deployed]

    def _await_ready(self) -> None:
        """The service itself says when it has settled (`reconciling`): read it, rather than
        the deploy's operation, whose permission (run.operations.get) exists only on the
        project, where the deploying account holds no Cloud Run role."""
        deadline = time.monotonic() + _DEPLOY_TIMEOUT_S
        while True:
            service = self._client.get_service(name=self._name)
            if not service.reconciling:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self._service_id}: still deploying after {_DEPLOY_TIMEOUT_S} s"
                )
            time.sleep(self._poll_s)
        condition = service.terminal_condition
        if condition.state != run_v2.Condition.State.CONDITION_SUCCEEDED:
            # The previous revision keeps serving; the new one's failure is the news.
            raise RuntimeError(
                f"{self._service_id}: the new revision of {self._image} did not become ready: "
                f"{condition.message or condition.state.name}"
            )

    def url(self) -> str:
        service = self._client.get_service(name=self._name)
        if service.latest_ready_revision != service.latest_created_revision:
            raise RuntimeError(
                f"{self._service_id}: revision {service.latest_created_revision} is not ready "
                f"({service.terminal_condition.message or 'still deploying'})"
            )
        return str(service.uri)

    def headers(self) -> dict[str, str]:
        """The service is private: calls carry an identity token for its URL."""
        from quotestream.adapters.gcp.identity import IdentityTokens

        return IdentityTokens(self.url(), self._credentials)()

    def _secret_name(self) -> str:
        secret = self._api_key_secret
        return (
            secret
            if secret.startswith("projects/")
            else f"projects/{self._project}/secrets/{secret}"
        )

    def _check_relay_key(self) -> None:
        """A revision whose secret cannot be mounted never starts, and Cloud Run says so only in
        the revision's conditions: check first (metadata only, never the key itself)."""
        if not self._api_key_secret:
            return
        client = secretmanager_v1.SecretManagerServiceClient(**self._secrets_access.client_kwargs())
        name = f"{self._secret_name()}/versions/latest"
        try:
            version = client.get_secret_version(name=name)
        except NotFound:
            raise RuntimeError(
                f"the relay key secret {name} does not exist: create it and add a version "
                "(README: Deploying to Google Cloud, relay key)"
            ) from None
        if version.state != secretmanager_v1.SecretVersion.State.ENABLED:
            raise RuntimeError(
                f"the relay key's latest version {version.name} is {version.state.name}, so "
                "Cloud Run could not mount it: add an enabled version"
            )

    def _service(self) -> run_v2.Service:
        env = [run_v2.EnvVar(name=key, value=value) for key, value in sorted(self._env.items())]
        if self._api_key_secret:
            env.append(
                run_v2.EnvVar(
                    name="QUOTESTREAM_API_KEY",
                    value_source=run_v2.EnvVarSource(
                        secret_key_ref=run_v2.SecretKeySelector(
                            secret=self._api_key_secret, version="latest"
                        )
                    ),
                )
            )
        return run_v2.Service(
            ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
            template=run_v2.RevisionTemplate(
                service_account=self._service_account,
                containers=[run_v2.Container(image=self._image, env=env)],
            ),
        )
