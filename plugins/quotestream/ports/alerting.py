"""Alerting that does not depend on Airflow: Cloud Monitoring's policies and dashboard."""

from __future__ import annotations

from typing import Protocol

from quotestream.domain.alerting import AlertPolicySpec, DashboardSpec
from quotestream.ports.resources import ResourceResult


class AlertingAdmin(Protocol):
    def ensure_alert_policy(self, spec: AlertPolicySpec) -> ResourceResult:
        """Created when none carries the spec's key, updated (only what differs) when one does
        and differs, exists otherwise: a second run sends no write."""
        ...

    def ensure_dashboard(self, spec: DashboardSpec) -> ResourceResult: ...
