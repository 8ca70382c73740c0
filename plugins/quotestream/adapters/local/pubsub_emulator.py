"""Google's Pub/Sub emulator (Java), run without gcloud from the Cloud SDK's platform folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from quotestream.adapters.local.processes import (
    EmulatorMissing,
    ServiceProcess,
    http_answers,
    start_service,
)

_SDK_ROOTS = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")
_LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")

INSTALL_HINT = (
    "The Pub/Sub emulator needs Java (17 or newer) and Google's emulator package: on Debian or "
    "Ubuntu with Google's Cloud SDK apt repository, "
    "`apt-get install openjdk-17-jre-headless google-cloud-cli-pubsub-emulator`; elsewhere "
    "`gcloud components install pubsub-emulator`."
)


def find_launcher() -> Path:
    roots = [os.environ.get("CLOUDSDK_ROOT_DIR", ""), *_SDK_ROOTS]
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(str(Path(gcloud).resolve().parent.parent))
    for root in filter(None, roots):
        candidate = Path(root) / _LAUNCHER
        if candidate.is_file():
            return candidate
    if gcloud:
        # Slow (gcloud is Python), hence the last resort.
        found = subprocess.run(  # noqa: S603
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout.strip()
        if found and (Path(found) / _LAUNCHER).is_file():
            return Path(found) / _LAUNCHER
    raise EmulatorMissing(f"the Pub/Sub emulator is not installed. {INSTALL_HINT}")


def start_pubsub_emulator(port: int, log_path: Path, host: str = "127.0.0.1") -> ServiceProcess:
    """Start the emulator (state in memory) and wait until it answers."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EmulatorMissing(f"Java is not installed. {INSTALL_HINT}")
    launcher = find_launcher()
    return start_service(
        "pubsub-emulator",
        [str(launcher), f"--host={host}", f"--port={port}"],
        host=host,
        port=port,
        log_path=log_path,
        ready=lambda: http_answers(f"http://{host}:{port}/"),
        env={"JAVA_OPTS": os.environ.get("JAVA_OPTS", "-Xms64m -Xmx1g")},
    )
