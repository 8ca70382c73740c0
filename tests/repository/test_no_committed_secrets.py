"""Fails when a tracked file holds something that looks like a credential."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

CREDENTIALS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "service-account key": re.compile(r'"private_key"\s*:\s*"-----BEGIN'),
    "Google API key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "Slack token": re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"),
    "Slack webhook": re.compile(
        r"hooks\.slack\.com/services/T[0-9A-Z]{8,}/B[0-9A-Z]{8,}/[0-9A-Za-z]{20,}"
    ),
    "GitHub token": re.compile(r"\bgh[pousr]_[0-9A-Za-z]{36}\b"),
}


def tracked_text_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [name for name in listed.stdout.decode().split("\0") if name]


def test_no_tracked_file_holds_a_credential() -> None:
    findings = []
    for name in tracked_text_files():
        try:
            text = (REPO / name).read_text(errors="ignore")
        except (IsADirectoryError, FileNotFoundError):
            continue
        findings += [
            f"{name}: {kind}" for kind, pattern in CREDENTIALS.items() if pattern.search(text)
        ]
    assert findings == []


@pytest.mark.parametrize(
    "sample",
    [
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "AIza" + "B" * 35,
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "xoxb-" + "1234567890-abcdef",
    ],
)
def test_the_scan_recognizes_credentials(sample: str) -> None:
    assert any(pattern.search(sample) for pattern in CREDENTIALS.values())
