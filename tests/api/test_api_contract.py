"""The live API keeps the contract its OpenAPI document states: schemathesis generates
requests from the document (examples, coverage, fuzzing, stateful phases, bounded) against the
API as a process on loopback with its relay on the Pub/Sub emulator, and checks every answer
(status codes, media types, response schemas, no 5xx)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from google.cloud.pubsub_v1 import PublisherClient

from quotestream.adapters.local.processes import ServiceProcess, free_port, start_api_process

pytestmark = pytest.mark.integration

KEY = "contract-test-key-not-a-secret"


def test_the_live_api_keeps_the_contract_of_its_openapi_document(
    pubsub_emulator: ServiceProcess, logs_dir: Path, tmp_path: Path
) -> None:
    project = f"contract-{uuid.uuid4().hex[:8]}"
    publisher = PublisherClient()
    publisher.create_topic(name=publisher.topic_path(project, "quotes"))
    port = free_port()
    api = start_api_process(
        port,
        logs_dir / f"api-contract-{port}.log",
        {
            **os.environ,
            "QUOTESTREAM_PROJECT": project,
            "QUOTESTREAM_MESSAGE_ORDERING": "false",
            "QUOTESTREAM_API_KEY": KEY,
            # Thousands of requests from one client: the rate limit has tests of its own.
            "QUOTESTREAM_RELAY_RATE_LIMIT_PER_S": "0",
        },
    )
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--header",
                f"X-API-Key: {KEY}",
                "--checks",
                "all",
                # A history request must end after it starts and span at most a day: rules
                # between parameters that OpenAPI cannot state, answered 422 on purpose.
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--request-timeout",
                "10",
                "--report-dir",
                str(tmp_path),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
        )
    finally:
        api.stop()
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    print(summary)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: 6" in summary
