"""An SMTP server on loopback that offers STARTTLS with a certificate of the test's own CA, and
keeps what it was sent; the CA and the server's certificate are made by the test."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
import socketserver
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signatures, and certificates and CRLs only for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_certificates(folder: Path) -> Certificates:
    """A CA, and a certificate it signs for 127.0.0.1 and localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quotestream test CA")])
    ca_usage = _key_usage(signs_certificates=True)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server_usage = _key_usage(signs_certificates=False)
    names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(server_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(names, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificates = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    certificates.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certificates.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certificates.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificates


@dataclass
class Delivery:
    """One message as the server received it, and whether TLS and a login came first."""

    tls: bool
    user: str | None
    recipients: list[str]
    data: str


@dataclass
class _Session:
    tls: bool = False
    user: str | None = None
    recipients: list[str] = field(default_factory=list)


class SmtpServer(socketserver.ThreadingTCPServer):
    """Offers STARTTLS (and, once under TLS, AUTH PLAIN); keeps every message in
    `deliveries` and every failed TLS handshake in `handshake_errors`."""

    daemon_threads = True

    def __init__(self, certificates: Certificates) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(certificates.server_cert, certificates.server_key)
        self.deliveries: list[Delivery] = []
        self.handshake_errors: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: SmtpServer
    timeout = 10

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())
        self.wfile.flush()

    def handle(self) -> None:
        session = _Session()
        self.reply("220 localhost ESMTP test server")
        while line := self.rfile.readline():
            command, _, argument = line.decode().rstrip("\r\n").partition(" ")
            verb = command.upper()
            if verb in ("EHLO", "HELO"):
                offers = ["AUTH PLAIN"] if session.tls else ["STARTTLS"]
                self.reply("250-localhost")
                for offer in offers[:-1]:
                    self.reply(f"250-{offer}")
                self.reply(f"250 {offers[-1]}")
            elif verb == "STARTTLS" and not session.tls:
                self.reply("220 ready to start TLS")
                if not self._start_tls():
                    return
                session = _Session(tls=True)
            elif verb == "AUTH" and session.tls:
                _, _, initial = argument.partition(" ")
                _, user, _ = base64.b64decode(initial).decode().split("\0")
                session.user = user
                self.reply("235 authenticated")
            elif verb == "MAIL":
                session.recipients = []
                self.reply("250 ok")
            elif verb == "RCPT":
                session.recipients.append(argument.partition(":")[2].strip("<>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self._receive(session)
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _start_tls(self) -> bool:
        try:
            connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.server.handshake_errors.append(str(error))
            return False
        self.connection: socket.socket = connection
        self.rfile = connection.makefile("rb")
        self.wfile = connection.makefile("wb")
        return True

    def _receive(self, session: _Session) -> None:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line.decode())
        self.server.deliveries.append(
            Delivery(session.tls, session.user, session.recipients, "".join(lines))
        )
        self.reply("250 queued")
