"""A token bucket per client (a caller's relay key, or an address: see
deps.limit_push_rate): each client may send `burst` requests at once, then `rate` a second.
In-process, so each server instance limits on its own."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Enough for every honest client at once; beyond it the least recently seen bucket goes
# (it was full, or nearly), so a flood of made-up addresses cannot exhaust memory.
MAX_TRACKED_CLIENTS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"need rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # Sync dependencies run in a thread pool: two requests of a client may race.
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one token of `client`'s bucket: 0.0 when allowed, else the seconds until a
        token is there again."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(client, None) or _Bucket(float(self.burst), now)
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate_per_s
            )
            bucket.updated = now
            self._buckets[client] = bucket
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate_per_s


def retry_after_header(wait_s: float) -> str:
    """Whole seconds (RFC 9110), rounded up, never 0: a client that retries at once fails."""
    return str(max(1, math.ceil(wait_s)))
