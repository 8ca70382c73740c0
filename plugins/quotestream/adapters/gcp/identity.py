"""Identity tokens for calling a private Cloud Run service, refreshed before they expire."""

from __future__ import annotations

import threading
import time


class IdentityTokens:
    _LIFETIME_S = 45 * 60  # Google's ID tokens live an hour

    def __init__(self, audience: str) -> None:
        self._audience = audience.rstrip("/")
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() >= self._expires:
                import google.auth.transport.requests
                import google.oauth2.id_token

                self._token = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
                    google.auth.transport.requests.Request(), self._audience
                )
                self._expires = time.monotonic() + self._LIFETIME_S
            return {"Authorization": f"Bearer {self._token}"}
