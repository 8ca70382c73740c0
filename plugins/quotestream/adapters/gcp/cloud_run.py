"""The ServiceDeployer on Cloud Run: create-or-update of the API service (the google provider
has no operator that updates a service), private by default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import run_v2

from quotestream.resources import Outcome, ResourceResult


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
        client: Any = None,
    ) -> None:
        self._parent = f"projects/{project}/locations/{region}"
        self._name = f"{self._parent}/services/{service}"
        self._service_id = service
        self._image = image
        self._env = dict(env)
        self._service_account = service_account
        self._api_key_secret = api_key_secret
        self._client = client or run_v2.ServicesClient()

    def deploy(self) -> ResourceResult:
        wanted = self._service()
        try:
            self._client.get_service(name=self._name)
        except NotFound:
            self._client.create_service(
                parent=self._parent, service=wanted, service_id=self._service_id
            ).result(timeout=900)
            return ResourceResult("cloud run service", self._service_id, Outcome.CREATED)
        wanted.name = self._name
        self._client.update_service(service=wanted).result(timeout=900)
        return ResourceResult("cloud run service", self._service_id, Outcome.UPDATED, self._image)

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

        return IdentityTokens(self.url())()

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
