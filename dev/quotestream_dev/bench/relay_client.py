"""Posting quotes to the push relay as a client should: a 429 (rate limit) or a 503 (relay
full) is backpressure, waited out as its Retry-After says, and the same batch sent again."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

MAX_RETRIES = 20


def post_until_accepted(url: str, body: Any, api_key: str) -> tuple[Any, int]:
    """The relay's receipt, and how many 429/503 answers came first."""
    retries = 0
    while True:
        request = urllib.request.Request(  # noqa: S310 - the bench's own loopback API
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": api_key},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.load(response), retries
        except urllib.error.HTTPError as error:
            if error.code not in (429, 503) or retries == MAX_RETRIES:
                raise
            retries += 1
            time.sleep(float(error.headers.get("Retry-After") or 1))
