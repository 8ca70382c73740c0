from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotestream.adapters.local.processes import free_port, http_answers, start_service

SEED = 777


@pytest.fixture
def api_url(logs_dir: Path) -> Iterator[str]:
    """The API as a process, with a known seed, its history served for the test."""
    port = free_port()
    api = start_service(
        "api",
        [sys.executable, "-m", "quotestream.cli", "api", "--port", str(port)],
        host="127.0.0.1",
        port=port,
        log_path=logs_dir / f"backfill-api-{port}.log",
        ready=lambda: http_answers(f"http://127.0.0.1:{port}/healthz"),
        env={"QUOTESTREAM_MARKET_SEED": str(SEED)},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()
