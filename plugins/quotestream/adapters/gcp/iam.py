"""Additive IAM grants on one resource, through any client with get/set_iam_policy."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from google.api_core.exceptions import Conflict

from quotestream.ports.resources import Outcome, ResourceResult

_ATTEMPTS = 3


def grant(
    client: Any, resource: str, wanted: Mapping[str, Sequence[str]], label: str
) -> ResourceResult:
    """Make sure each role binds its members on `resource`; never removes anyone's binding.
    The policy goes back with the etag it was read with, so a concurrent change makes the set
    fail (409 ABORTED; over REST the client raises Conflict) instead of being overwritten: then
    it is read and merged again."""
    attempt = 0
    while True:
        attempt += 1
        # Version 3 keeps conditional bindings intact; a v1 read of a policy holding any
        # would come back rewritten, and could not be written back.
        policy = client.get_iam_policy(
            request={"resource": resource, "options": {"requested_policy_version": 3}}
        )
        policy.version = 3
        added = _merge(policy, wanted)
        if not added:
            return ResourceResult("iam policy", label, Outcome.EXISTS)
        try:
            client.set_iam_policy(request={"resource": resource, "policy": policy})
        except Conflict:
            if attempt == _ATTEMPTS:
                raise
            time.sleep(0.5 * 2 ** (attempt - 1))
        else:
            return ResourceResult(
                "iam policy", label, Outcome.UPDATED, "granted " + "; ".join(added)
            )


def _merge(policy: Any, wanted: Mapping[str, Sequence[str]]) -> list[str]:
    added = []
    for role, members in wanted.items():
        if not members:
            continue
        # A conditional binding grants less than the role: only an unconditional one counts.
        binding = next(
            (b for b in policy.bindings if b.role == role and not b.HasField("condition")), None
        )
        if binding is None:
            binding = policy.bindings.add(role=role)
        for member in members:
            if member not in binding.members:
                binding.members.append(member)
                added.append(f"{role} to {member}")
    return added
