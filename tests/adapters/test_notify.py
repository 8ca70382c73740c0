"""Alert e-mail goes over STARTTLS to a server whose certificate is verified, login or not;
plain SMTP only when asked for, and then never with a password. A webhook URL, which holds
its token, never appears in an error."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import pytest

from quotestream.adapters.notify import SmtpNotifier, WebhookNotifier
from quotestream.entrypoints.dags import notifiers
from tests.support.smtp_server import Certificates, SmtpServer, make_certificates
from tests.support.webhook import serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def server(certificates: Certificates) -> Iterator[SmtpServer]:
    with serving(SmtpServer(certificates)) as smtp:
        yield smtp


def notifier(server: SmtpServer, **options: object) -> SmtpNotifier:
    return SmtpNotifier(
        "127.0.0.1",
        server.port,
        "quotestream@example.test",
        ["ops@example.test"],
        **options,  # type: ignore[arg-type]
    )


def test_a_server_whose_certificate_is_not_trusted_is_refused(server: SmtpServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        notifier(server, user="alerts", password="not-a-real-password").notify("s", "b")
    assert server.deliveries == []


def test_without_a_login_the_mail_still_goes_over_verified_tls(server: SmtpServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        notifier(server).notify("s", "b")
    assert server.deliveries == []


def test_a_trusted_server_gets_the_mail_under_tls_and_then_the_login(
    server: SmtpServer, certificates: Certificates
) -> None:
    trusting = notifier(
        server, user="alerts", password="not-a-real-password", ca_file=str(certificates.ca)
    )
    trusting.notify("quotestream_backfill failed", "the warehouse did not answer")
    [delivery] = server.deliveries
    assert (delivery.tls, delivery.user, delivery.recipients) == (
        True,
        "alerts",
        ["ops@example.test"],
    )
    assert "Subject: quotestream_backfill failed" in delivery.data


def test_the_trust_store_of_the_environment_is_honoured(
    server: SmtpServer, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    notifier(server).notify("s", "b")
    assert [delivery.tls for delivery in server.deliveries] == [True]


def test_plain_smtp_only_when_asked_for_and_never_with_a_password(server: SmtpServer) -> None:
    notifier(server, starttls=False).notify("s", "b")
    assert [delivery.tls for delivery in server.deliveries] == [False]
    with pytest.raises(ValueError, match="only ever sent over TLS"):
        notifier(server, starttls=False, user="alerts", password="not-a-real-password")


def test_a_webhook_url_that_is_refused_is_not_repeated() -> None:
    with pytest.raises(ValueError, match="http") as refused:
        WebhookNotifier("hooks.example.test/services/T0/B0/tok3n-n0t-to-be-logged")
    assert "tok3n" not in str(refused.value)


def test_the_alerts_connection_sets_the_port_the_trust_and_the_tls_of_the_mail(
    server: SmtpServer, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {
        "email_to": "ops@example.test",
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port,
        "smtp_ca_file": str(certificates.ca),
    }
    connection = {"conn_type": "generic", "login": "alerts", "password": "not-a-real-password"}
    monkeypatch.setenv("AIRFLOW_CONN_QS_MAIL", json.dumps({**connection, "extra": extra}))
    [mail] = notifiers("qs_mail")
    mail.notify("quotestream_backfill failed", "the warehouse did not answer")
    assert [(d.tls, d.user) for d in server.deliveries] == [(True, "alerts")]

    untrusted = {**extra, "smtp_ca_file": None}
    monkeypatch.setenv("AIRFLOW_CONN_QS_MAIL", json.dumps({**connection, "extra": untrusted}))
    [mail] = notifiers("qs_mail")
    with pytest.raises(ssl.SSLCertVerificationError):
        mail.notify("s", "b")

    plain = {**extra, "smtp_starttls": "false"}
    monkeypatch.setenv("AIRFLOW_CONN_QS_MAIL", json.dumps({**connection, "extra": plain}))
    with pytest.raises(ValueError, match="only ever sent over TLS"):
        notifiers("qs_mail")
