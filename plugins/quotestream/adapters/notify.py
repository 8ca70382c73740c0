"""Notifier adapters: a Slack-compatible webhook and e-mail over SMTP."""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.request
from collections.abc import Sequence
from email.message import EmailMessage
from urllib.parse import urlsplit


class WebhookNotifier:
    """POSTs {"text": ...}: the payload Slack and Google Chat incoming webhooks accept."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            # Not the URL itself: a webhook's token is part of it, and this reaches the logs.
            scheme = urlsplit(url).scheme or "none"
            raise ValueError(f"webhook URL must be http(s), not of scheme {scheme!r}")
        self._url = url
        self._timeout_s = timeout_s

    def notify(self, subject: str, body: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            self._url,
            data=json.dumps({"text": f"*{subject}*\n{body}"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self._timeout_s):  # noqa: S310
            pass


# Mail submission with STARTTLS (RFC 6409): where an alerts connection names no port.
SUBMISSION_PORT = 587


class SmtpNotifier:
    """E-mail through an SMTP server, over STARTTLS with the server's certificate verified
    (the system's trust store, or `ca_file`). Without TLS (`starttls=False`, an explicit
    choice for a relay on a trusted network) no password is ever sent."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        user: str | None = None,
        password: str | None = None,
        *,
        starttls: bool = True,
        ca_file: str | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        if password and not starttls:
            raise ValueError("an SMTP password is only ever sent over TLS: keep starttls on")
        self._host, self._port = host, port
        self._sender, self._recipients = sender, list(recipients)
        self._user, self._password = user, password
        self._starttls, self._ca_file = starttls, ca_file
        self._timeout_s = timeout_s

    def notify(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["Subject"], message["From"] = subject, self._sender
        message["To"] = ", ".join(self._recipients)
        message.set_content(body)
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
            if self._starttls:
                # Verifying: the certificate must chain to a trusted CA and name the host.
                smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file))
            if self._user and self._password:
                smtp.login(self._user, self._password)
            smtp.send_message(message)
