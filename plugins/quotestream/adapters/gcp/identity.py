"""Identity tokens for calling a private Cloud Run service, refreshed before they expire,
minted from the same credentials the other adapters use."""

from __future__ import annotations

import threading
import time
from typing import Any


class IdentityTokens:
    _LIFETIME_S = 45 * 60  # Google's ID tokens live an hour

    def __init__(self, audience: str, credentials: Any = None) -> None:
        self._audience = audience.rstrip("/")
        self._credentials = credentials
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() >= self._expires:
                self._token = self._fetch()
                self._expires = time.monotonic() + self._LIFETIME_S
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch(self) -> str:
        import google.auth.transport.requests
        import google.oauth2.id_token
        from google.auth import compute_engine, impersonated_credentials
        from google.oauth2 import service_account

        request = google.auth.transport.requests.Request()
        source = self._credentials
        minter: Any
        if source is None or isinstance(source, compute_engine.Credentials):
            # Application Default Credentials, or the metadata server's account (Composer's
            # default connection, Dataflow workers): the same identity either way.
            return str(google.oauth2.id_token.fetch_id_token(request, self._audience))  # type: ignore[no-untyped-call]
        if isinstance(source, service_account.Credentials):
            minter = service_account.IDTokenCredentials(  # type: ignore[no-untyped-call]
                source.signer,
                source.service_account_email,
                source._token_uri,
                target_audience=self._audience,
            )
        elif isinstance(source, impersonated_credentials.Credentials):
            minter = impersonated_credentials.IDTokenCredentials(  # type: ignore[no-untyped-call]
                source, target_audience=self._audience, include_email=True
            )
        else:
            # Falling back to ADC here would call the API as another identity than the one
            # the task was given.
            raise TypeError(
                f"cannot mint an identity token for the private API from {type(source).__name__}"
                " credentials: use a service account (key, attached or impersonated)"
            )
        minter.refresh(request)
        return str(minter.token)
