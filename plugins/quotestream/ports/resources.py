"""What provisioning manages, as plain data, and how each resource came out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class ResourceResult:
    kind: str
    name: str
    outcome: Outcome
    detail: str = ""

    def __str__(self) -> str:
        suffix = f" ({self.detail})" if self.detail else ""
        return f"{self.kind:<20} {self.name:<26} {self.outcome}{suffix}"


def service_account_members(email: str) -> list[str]:
    """The IAM member of a service account, none when the setting is empty."""
    return [f"serviceAccount:{email}"] if email else []


class IncompatibleChange(RuntimeError):
    """The live resource differs in a way that cannot be changed in place."""


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    name: str
    topic: str
    ack_deadline_s: int = 60
    retention_s: int = 7 * 86_400
    dead_letter_topic: str | None = None
    max_delivery_attempts: int = 5
    ordered: bool = False
