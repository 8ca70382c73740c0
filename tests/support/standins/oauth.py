"""Google's OAuth 2.0 token endpoint, as google-auth's service-account credentials call it (the
JWT-bearer grant), and service-account keys that point there: access and ID tokens are minted
locally, nothing reaches oauth2.googleapis.com."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

DEFAULT_ACCOUNT = "quotestream-tests@standin-project.iam.gserviceaccount.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class OAuthState:
    """Access tokens are opaque, as Google's are; the stand-in remembers whose each one is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.issued = 0  # access tokens handed out, which numbers them
        self._holders: dict[str, str] = {}

    def reset(self) -> None:
        with self._lock:
            self.issued = 0
            self._holders.clear()

    def access_token(self, email: str) -> dict[str, Any]:
        with self._lock:
            self.issued += 1
            token = f"standin-{self.issued}"
            self._holders[token] = email
            return {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def holder_of(self, token: str) -> str | None:
        with self._lock:
            return self._holders.get(token)


def claims_of(assertion: str) -> dict[str, Any]:
    """A JWT's claims, unverified: the stand-in trusts whoever signed."""
    payload = assertion.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def form_of(body: bytes) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(body.decode()).items()}


def id_token(audience: str, email: str) -> str:
    issued = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": "standin"}
    claims = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "email": email,
        "email_verified": True,
        "sub": email,
        "iat": issued,
        "exp": issued + 3600,
    }
    parts = [json.dumps(part).encode() for part in (header, claims)] + [b"standin-signature"]
    return ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in parts)


def router(state: OAuthState) -> APIRouter:
    api = APIRouter()

    @api.post("/token")
    async def token(request: Request) -> Any:
        form = form_of(await request.body())
        if form.get("grant_type") != JWT_BEARER or not form.get("assertion"):
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "standin: JWT bearer only",
                },
                status_code=400,
            )
        claims = claims_of(form["assertion"])
        if "target_audience" in claims:
            return {"id_token": id_token(claims["target_audience"], claims["iss"])}
        return state.access_token(claims["iss"])

    return api


def service_account_info(
    token_uri: str,
    email: str = DEFAULT_ACCOUNT,
    project_id: str = "standin-project",
) -> dict[str, str]:
    """A service-account key, its private key fresh, whose credentials refresh at `token_uri`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem.decode(),
        "client_email": email,
        "client_id": str(int(uuid.uuid4().hex[:20], 16)),
        "token_uri": token_uri,
    }


def key_file(path: Path, token_uri: str, email: str = DEFAULT_ACCOUNT) -> str:
    """`service_account_info` written where GOOGLE_APPLICATION_CREDENTIALS can name it."""
    path.write_text(json.dumps(service_account_info(token_uri, email)))
    return str(path)
