"""How an adapter reaches one Google API: with which credentials, at which endpoint.

Inside an Airflow task the credentials come from an Airflow connection through the google
provider's base hook (with its impersonation chain), as every Composer DAG gets them; anywhere
else (the CLI, Beam workers) from Application Default Credentials, impersonating the chain
when one is set (the workers' settings never carry one).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class ApiAccess:
    """`credentials` None means Application Default Credentials; `endpoint` None, Google's."""

    credentials: Any = None
    endpoint: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """For a generated client on its REST transport."""
        options = {"api_endpoint": self.endpoint} if self.endpoint else {}
        return {"credentials": self.credentials, "client_options": options, "transport": "rest"}

    def grpc_client_kwargs(self, transport_class: Any) -> dict[str, Any]:
        """For a client that only speaks gRPC: a plain-http endpoint (loopback only, which the
        settings enforce) gets an insecure channel, as TLS cannot be spoken to it. gRPC will
        not attach call credentials to such a channel, so each call's metadata gets the
        credentials' bearer token here: whoever answers on loopback still learns who calls."""
        if self.endpoint and self.endpoint.startswith("http://"):
            import grpc

            channel = grpc.intercept_channel(
                grpc.insecure_channel(urlsplit(self.endpoint).netloc),
                _bearer_token(self.credentials),
            )
            return {"transport": transport_class(channel=channel)}
        options = {"api_endpoint": urlsplit(self.endpoint).netloc} if self.endpoint else {}
        return {"credentials": self.credentials, "client_options": options}


# Google's endpoints with Application Default Credentials.
DEFAULT_ACCESS = ApiAccess()


def _bearer_token(credentials: Any) -> Any:
    """A unary-unary client interceptor adding the credentials' authorization header (from
    Application Default Credentials when none are given), refreshed as they expire."""
    import google.auth
    import grpc
    from google.auth.transport.requests import Request

    class BearerToken(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def __init__(self) -> None:
            self._credentials = credentials

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            headers: dict[str, str] = {}
            self._credentials.before_request(Request(), "POST", details.method, headers)
            added = [(key.lower(), value) for key, value in headers.items()]
            return continuation(_CallDetails(details, [*(details.metadata or ()), *added]), request)

    return BearerToken()


class _CallDetails:
    """grpc.ClientCallDetails with other metadata (the interface is attributes only)."""

    def __init__(self, original: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = original.method
        self.timeout = original.timeout
        self.metadata = metadata
        self.credentials = original.credentials
        self.wait_for_ready = original.wait_for_ready
        self.compression = original.compression


def in_airflow_task() -> bool:
    sdk = sys.modules.get("airflow.sdk")
    if sdk is None:  # a task always has it imported; nothing else needs to import Airflow
        return False
    try:
        sdk.get_current_context()
    except RuntimeError:
        return False
    return True


def google_credentials(connection_id: str, chain: Sequence[str]) -> Any:
    if in_airflow_task():
        from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

        hook = GoogleBaseHook(gcp_conn_id=connection_id, impersonation_chain=list(chain) or None)
        credentials, _ = hook.get_credentials_and_project_id()
        return credentials
    if not chain:
        return None
    import google.auth
    from google.auth import impersonated_credentials

    source, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
        source_credentials=source,
        target_principal=chain[-1],
        delegates=list(chain[:-1]),
        target_scopes=[CLOUD_PLATFORM_SCOPE],
    )
