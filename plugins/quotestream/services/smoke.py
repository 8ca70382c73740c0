"""Readiness and a smoke test of a deployed API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


def smoke_test_api(base_url: str, timeout_s: float, headers: dict[str, str] | None = None) -> str:
    """Wait for /ready (200), then one GET of the latest quotes; returns what it saw."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"

    def get(path: str) -> urllib.request.Request:
        return urllib.request.Request(f"{base_url}{path}", headers=headers or {})  # noqa: S310

    while True:
        try:
            with urllib.request.urlopen(get("/ready"), timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    break
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}: {error.read()[:200]!r}"
        except OSError as error:
            last = str(error)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/ready not ready after {timeout_s:.0f} s: {last}")
        time.sleep(1)
    with urllib.request.urlopen(get("/v1/quotes/latest"), timeout=10) as response:  # noqa: S310
        quotes = json.load(response)["quotes"]
    if not quotes:
        raise RuntimeError(f"{base_url}/v1/quotes/latest served no quotes")
    return f"ready; {len(quotes)} latest quotes, e.g. {quotes[0]['pair']} bid {quotes[0]['bid']}"
