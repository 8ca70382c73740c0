"""Cloud Monitoring's alert policies and dashboard, created or brought to the declared state.

Both clients speak gRPC here: the alert policy client has no REST transport, and the
dashboards API lives on the same Monitoring endpoint, which one setting names for both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from google.cloud import monitoring_dashboard_v1, monitoring_v3
from google.cloud.monitoring_dashboard_v1.services.dashboards_service.transports import (
    DashboardsServiceGrpcTransport,
)
from google.cloud.monitoring_v3.services.alert_policy_service.transports import (
    AlertPolicyServiceGrpcTransport,
)
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from quotestream.adapters.gcp.access import DEFAULT_ACCESS, ApiAccess
from quotestream.domain.alerting import MANAGED_LABEL, AlertPolicySpec, DashboardSpec
from quotestream.ports.resources import Outcome, ResourceResult

# What provisioning declares of a policy; the rest (enabled, severity, ...) is left to people.
_POLICY_FIELDS = (
    "display_name",
    "documentation",
    "user_labels",
    "combiner",
    "conditions",
    "notification_channels",
)
_DASHBOARD_FIELDS = ("display_name", "labels", "grid_layout")


class MonitoringRefused(RuntimeError):
    """Cloud Monitoring answered a provisioning call with an error."""


class CloudMonitoringAlerting:
    def __init__(self, project: str, *, access: ApiAccess = DEFAULT_ACCESS) -> None:
        self._parent = f"projects/{project}"
        self._policies = monitoring_v3.AlertPolicyServiceClient(
            **access.grpc_client_kwargs(AlertPolicyServiceGrpcTransport)
        )
        self._dashboards = monitoring_dashboard_v1.DashboardsServiceClient(
            **access.grpc_client_kwargs(DashboardsServiceGrpcTransport)
        )

    def ensure_alert_policy(self, spec: AlertPolicySpec) -> ResourceResult:
        desired = _policy(spec)
        with _refusal("alert policy", spec.display_name, self._parent):
            found = list(
                self._policies.list_alert_policies(
                    request={
                        "name": self._parent,
                        "filter": f'user_label.{MANAGED_LABEL} = "{spec.key}"',
                    }
                )
            )
            if not found:
                self._policies.create_alert_policy(name=self._parent, alert_policy=desired)
                return ResourceResult("alert policy", spec.display_name, Outcome.CREATED)
            live = found[0]
            changed = _differing(live, desired, _POLICY_FIELDS)
            if not changed:
                return ResourceResult("alert policy", spec.display_name, Outcome.EXISTS)
            desired.name = live.name
            self._policies.update_alert_policy(
                alert_policy=desired, update_mask=field_mask_pb2.FieldMask(paths=changed)
            )
        return ResourceResult(
            "alert policy", spec.display_name, Outcome.UPDATED, ", ".join(changed)
        )

    def ensure_dashboard(self, spec: DashboardSpec) -> ResourceResult:
        desired = _dashboard(spec)
        with _refusal("dashboard", spec.display_name, self._parent):
            live = next(
                (
                    one
                    for one in self._dashboards.list_dashboards(request={"parent": self._parent})
                    if one.labels.get(MANAGED_LABEL) == spec.key
                ),
                None,
            )
            if live is None:
                self._dashboards.create_dashboard(
                    request={"parent": self._parent, "dashboard": desired}
                )
                return ResourceResult("dashboard", spec.display_name, Outcome.CREATED)
            changed = _differing(live, desired, _DASHBOARD_FIELDS)
            if not changed:
                return ResourceResult("dashboard", spec.display_name, Outcome.EXISTS)
            # A dashboard is replaced whole; its etag makes a concurrent edit fail, not vanish.
            desired.name, desired.etag = live.name, live.etag
            self._dashboards.update_dashboard(request={"dashboard": desired})
        return ResourceResult("dashboard", spec.display_name, Outcome.UPDATED, ", ".join(changed))


@contextmanager
def _refusal(kind: str, name: str, parent: str) -> Iterator[None]:
    """Turns an API error into one that names the resource and what to check."""
    try:
        yield
    except GoogleAPICallError as error:
        raise MonitoringRefused(
            f"Cloud Monitoring refused to provision the {kind} {name!r} in {parent}: "
            f"{error.code} {error.message} (the Monitoring API must be enabled, and the "
            "account needs roles/monitoring.alertPolicyEditor and "
            "roles/monitoring.dashboardEditor, which `quotestream gcp bootstrap` grants)"
        ) from error


def _policy(spec: AlertPolicySpec) -> monitoring_v3.AlertPolicy:
    return monitoring_v3.AlertPolicy(
        display_name=spec.display_name,
        documentation={"content": spec.documentation, "mime_type": "text/markdown"},
        user_labels={MANAGED_LABEL: spec.key},
        combiner=monitoring_v3.AlertPolicy.ConditionCombinerType.OR,
        conditions=[{"display_name": spec.display_name, **_condition(spec)}],
        notification_channels=list(spec.notification_channels),
    )


def _condition(spec: AlertPolicySpec) -> dict[str, Any]:
    if spec.promql:
        return {
            "condition_prometheus_query_language": {
                "query": f"({spec.promql}) > {spec.threshold}",
                "duration": {"seconds": spec.duration_s},
            }
        }
    aggregation = monitoring_v3.Aggregation(
        alignment_period={"seconds": spec.aggregation.alignment_s},
        per_series_aligner=spec.aggregation.aligner,
        cross_series_reducer=spec.aggregation.reducer,
    )
    threshold = monitoring_v3.AlertPolicy.Condition.MetricThreshold(
        filter=spec.metric_filter,
        aggregations=[aggregation],
        comparison=spec.comparison,
        threshold_value=spec.threshold,
        duration={"seconds": spec.duration_s},
    )
    if spec.denominator_filter:
        threshold.denominator_filter = spec.denominator_filter
        threshold.denominator_aggregations = [aggregation]
    return {"condition_threshold": threshold}


def _dashboard(spec: DashboardSpec) -> monitoring_dashboard_v1.Dashboard:
    return monitoring_dashboard_v1.Dashboard(
        display_name=spec.display_name,
        labels={MANAGED_LABEL: spec.key},
        grid_layout={"columns": 2, "widgets": [_chart(policy) for policy in spec.policies]},
    )


def _chart(policy: AlertPolicySpec) -> dict[str, Any]:
    aggregation = {
        "alignment_period": {"seconds": policy.aggregation.alignment_s},
        "per_series_aligner": policy.aggregation.aligner,
        "cross_series_reducer": policy.aggregation.reducer,
    }
    if policy.promql:
        query: dict[str, Any] = {"prometheus_query": policy.promql}
    elif policy.denominator_filter:
        query = {
            "time_series_filter_ratio": {
                "numerator": {"filter": policy.metric_filter, "aggregation": aggregation},
                "denominator": {"filter": policy.denominator_filter, "aggregation": aggregation},
            }
        }
    else:
        query = {"time_series_filter": {"filter": policy.metric_filter, "aggregation": aggregation}}
    return {
        "title": policy.display_name,
        "xy_chart": {
            "data_sets": [{"time_series_query": query, "plot_type": "LINE"}],
            "thresholds": [{"value": policy.threshold, "label": "alert"}],
        },
    }


def _differing(live: Any, desired: Any, paths: tuple[str, ...]) -> tuple[str, ...]:
    """The top-level fields of `paths` where `live` lacks what `desired` declares (what the
    API fills in itself, such as condition names or defaults, is no difference)."""
    live_pb, desired_pb = type(live).pb(live), type(desired).pb(desired)
    return tuple(
        path
        for path in paths
        if not _covers(live_pb, desired_pb, desired_pb.DESCRIPTOR.fields_by_name[path])
    )


def _covers(live: Message, desired: Message, field: Any) -> bool:
    live_value, desired_value = getattr(live, field.name), getattr(desired, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return dict(live_value) == dict(desired_value)
    if field.is_repeated:
        if len(live_value) != len(desired_value):
            return False
        if field.message_type is None:
            return list(live_value) == list(desired_value)
        return all(_message_covers(a, b) for a, b in zip(live_value, desired_value, strict=True))
    if field.message_type is not None:
        return _message_covers(live_value, desired_value)
    return bool(live_value == desired_value)


def _message_covers(live: Message, desired: Message) -> bool:
    """Every field `desired` sets is in `live` alike; an unset one is the server's to fill."""
    return all(_covers(live, desired, field) for field, _ in desired.ListFields())
