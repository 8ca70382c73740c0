"""Notifier adapters: a Slack-compatible webhook and e-mail over SMTP."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from collections.abc import Sequence
from email.message import EmailMessage


class WebhookNotifier:
    """POSTs {"text": ...}: the payload Slack and Google Chat incoming webhooks accept."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s): {url[:40]!r}")
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


class SmtpNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._sender, self._recipients = sender, list(recipients)
        self._user, self._password = user, password

    def notify(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["Subject"], message["From"] = subject, self._sender
        message["To"] = ", ".join(self._recipients)
        message.set_content(body)
        with smtplib.SMTP(self._host, self._port, timeout=15) as smtp:
            if self._user and self._password:
                smtp.starttls()
                smtp.login(self._user, self._password)
            smtp.send_message(message)
