"""IAM policies as Cloud Run and Pub/Sub keep them: each version of a policy has its own etag,
and a set carrying a stale etag is refused (409 ABORTED), which read-modify-write loops retry."""

from __future__ import annotations

import base64
import copy
import threading
from typing import Any

from tests.support.standins.wire import ApiError

# What Google answers for a resource that never had a policy; a set may carry it back.
EMPTY_ETAG = "ACAB"


class IamPolicies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.policies: dict[str, dict[str, Any]] = {}  # by full resource name
        # Someone else's binding, made between the next read and the set that follows it.
        self.concurrent_binding: dict[str, Any] | None = None
        self._sets = 0

    def get(self, resource: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.policies.get(resource, {"version": 1, "etag": EMPTY_ETAG}))

    def set(self, resource: str, request: dict[str, Any]) -> dict[str, Any]:
        """`request` is SetIamPolicyRequest's body: `policy` and an optional `updateMask`
        (Google's default mask is "bindings,etag")."""
        sent = request.get("policy") or {}
        fields = [path for path in request.get("updateMask", "bindings,etag").split(",") if path]
        with self._lock:
            if self.concurrent_binding is not None:
                binding, self.concurrent_binding = self.concurrent_binding, None
                self._store(resource, {"bindings": [binding]}, ["bindings"])
            current = self.policies.get(resource, {"version": 1, "etag": EMPTY_ETAG})
            if sent.get("etag") and sent["etag"] != current["etag"]:
                raise ApiError(
                    409,
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole "
                    "read-modify-write with exponential backoff.",
                )
            return self._store(resource, sent, fields)

    def _store(self, resource: str, sent: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        policy = copy.deepcopy(self.policies.get(resource, {"version": 1, "etag": EMPTY_ETAG}))
        for field in fields:
            if field == "etag":
                continue
            if field in sent:
                policy[field] = copy.deepcopy(sent[field])
            else:
                policy.pop(field, None)
        self._sets += 1
        policy["etag"] = base64.b64encode(f"standin-{self._sets}".encode()).decode()
        self.policies[resource] = policy
        return copy.deepcopy(policy)

    def reset(self) -> None:
        with self._lock:
            self.policies.clear()
            self.concurrent_binding = None
