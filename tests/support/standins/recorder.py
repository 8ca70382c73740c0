"""Every request the stand-ins receive, and the faults they are told to serve: tests assert on
what the real clients sent, and make the next matching calls fail as Google would."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    api: str  # "dataflow", "run", "secretmanager", "pubsub", "resourcemanager", "oauth", ...
    method: str  # the HTTP verb, or the gRPC method name
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None  # parsed JSON; for the token endpoint, its form and claims
    authorization: str  # "" when absent


@dataclass
class Fault:
    api: str
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    retry_after_s: float | None


class Recorder:
    """Thread-safe: the servers record from their own threads while tests read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: list[Fault] = []

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def of(
        self, api: str, method: str | None = None, path_contains: str | None = None
    ) -> list[Call]:
        return [
            call
            for call in self.calls
            if call.api == api
            and (method is None or call.method == method)
            and (path_contains is None or path_contains in call.path)
        ]

    def clear(self) -> None:
        """Forgets the calls and the faults not served yet."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()

    def fail(
        self,
        api: str,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        retry_after_s: float | None = None,
    ) -> None:
        """The next `times` requests of `api` and `method` whose path matches `path_regex`
        (re.search) get `status` (gRPC: its canonical code) instead of an answer."""
        with self._lock:
            self._faults.append(
                Fault(api, method, re.compile(path_regex), status, times, retry_after_s)
            )

    def take_fault(self, api: str, method: str, path: str) -> Fault | None:
        """The fault this request gets, if any, counting it as served."""
        with self._lock:
            for fault in self._faults:
                if fault.api == api and fault.method == method and fault.path.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            return None
