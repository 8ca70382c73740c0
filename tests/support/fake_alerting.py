"""An in-memory AlertingAdmin: what the policies and the dashboard would be after provisioning."""

from __future__ import annotations

from typing import TypeVar

from quotestream.domain.alerting import AlertPolicySpec, DashboardSpec
from quotestream.ports.resources import Outcome, ResourceResult

Spec = TypeVar("Spec", AlertPolicySpec, DashboardSpec)


class InMemoryAlertingAdmin:
    def __init__(self) -> None:
        self.policies: dict[str, AlertPolicySpec] = {}
        self.dashboards: dict[str, DashboardSpec] = {}
        self.writes: list[str] = []  # the keys written, in order

    def ensure_alert_policy(self, spec: AlertPolicySpec) -> ResourceResult:
        outcome = self._put(self.policies, spec.key, spec)
        return ResourceResult("alert policy", spec.display_name, outcome)

    def ensure_dashboard(self, spec: DashboardSpec) -> ResourceResult:
        outcome = self._put(self.dashboards, spec.key, spec)
        return ResourceResult("dashboard", spec.display_name, outcome)

    def _put(self, store: dict[str, Spec], key: str, spec: Spec) -> Outcome:
        before = store.get(key)
        if before == spec:
            return Outcome.EXISTS
        store[key] = spec
        self.writes.append(key)
        return Outcome.CREATED if before is None else Outcome.UPDATED
