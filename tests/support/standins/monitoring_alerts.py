"""Cloud Monitoring's AlertPolicyService (v3) and DashboardsService (dashboard v1) over gRPC,
served beside ListTimeSeries on the Monitoring stand-in's server. They refuse what the real
API refuses and an adapter could get wrong: missing display names or conditions, a threshold
without a comparison or duration, an aligner without an alignment period, labels out of
format, notification channels that are not the project's, an update mask naming a field that
is not mutable, a dashboard update without the current etag."""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import proto  # type: ignore[import-untyped]
from google.cloud import monitoring_dashboard_v1, monitoring_v3
from google.protobuf import field_mask_pb2, wrappers_pb2

from tests.support.standins.permissions import Authority
from tests.support.standins.recorder import Call, Recorder
from tests.support.standins.wire import ApiError

POLICIES = "google.monitoring.v3.AlertPolicyService"
DASHBOARDS = "google.monitoring.dashboard.v1.DashboardsService"
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_FILTER_TERM = re.compile(r'\s*(user_label\.([a-z][a-z0-9_-]*)|display_name)\s*=\s*"([^"]*)"\s*')
_MUTABLE_POLICY_FIELDS = {
    "display_name",
    "documentation",
    "user_labels",
    "conditions",
    "combiner",
    "enabled",
    "notification_channels",
    "severity",
    "alert_strategy",
}
Policy = monitoring_v3.AlertPolicy
M = TypeVar("M", bound=proto.Message)
Dashboard = monitoring_dashboard_v1.Dashboard


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _invalid(message: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, message)


# The permission each method needs, from Cloud Monitoring's access-control reference.
PERMISSIONS = {
    "ListTimeSeries": "monitoring.timeSeries.list",
    "ListAlertPolicies": "monitoring.alertPolicies.list",
    "GetAlertPolicy": "monitoring.alertPolicies.get",
    "CreateAlertPolicy": "monitoring.alertPolicies.create",
    "UpdateAlertPolicy": "monitoring.alertPolicies.update",
    "ListDashboards": "monitoring.dashboards.list",
    "GetDashboard": "monitoring.dashboards.get",
    "CreateDashboard": "monitoring.dashboards.create",
    "UpdateDashboard": "monitoring.dashboards.update",
}


def _project_of(request: Any) -> str:
    """The project a Monitoring request acts in, from whichever name it carries."""
    for name in (
        getattr(request, "name", ""),
        getattr(request, "parent", ""),
        getattr(getattr(request, "alert_policy", None), "name", ""),
        getattr(getattr(request, "dashboard", None), "name", ""),
    ):
        if name and name.startswith("projects/"):
            return "/".join(name.split("/")[:2])
    raise _invalid("the request names no project")


def recorded_rpc(
    recorder: Recorder,
    grpc_codes: dict[int, Any],
    service: str,
    method: str,
    request_type: Any,
    response_type: Any,
    serve: Callable[[Any], Any],
    authority: Authority,
) -> Any:
    """A unary gRPC method of the Monitoring stand-ins: each call recorded as api
    "monitoring", the recorder's faults served as gRPC status codes, a caller without the
    method's permission refused as Google refuses it, a Refused as its code."""
    path = f"/{service}/{method}"

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata())
        authorization = str(metadata.get("authorization", ""))
        recorder.record(
            Call(
                api="monitoring",
                method=method,
                path=path,
                query={},
                body=request_type.to_dict(request),
                authorization=authorization,
            )
        )
        fault = recorder.take_fault("monitoring", method, path)
        if fault is not None:
            context.abort(grpc_codes.get(fault.status, grpc.StatusCode.UNKNOWN), "standin: as told")
        try:
            authority.require(authorization, PERMISSIONS[method], _project_of(request))
        except ApiError as denied:
            context.abort(grpc_codes[denied.code], denied.message)
        try:
            return serve(request)
        except Refused as refused:
            context.abort(refused.code, str(refused))

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.deserialize,
        response_serializer=response_type.serialize,
    )


class AlertingStandIn:
    """Policies and dashboards per project; the notification channels that exist are the
    ones a test adds to `channels`."""

    def __init__(
        self, recorder: Recorder, grpc_codes: dict[int, Any], authority: Authority
    ) -> None:
        self.recorder = recorder
        self._grpc_codes = grpc_codes
        self._authority = authority
        self._lock = threading.Lock()
        self.policies: dict[str, Policy] = {}
        self.dashboards: dict[str, Dashboard] = {}
        self.channels: set[str] = set()
        self._ids = itertools.count(1)

    def reset(self) -> None:
        with self._lock:
            self.policies.clear()
            self.dashboards.clear()
            self.channels.clear()

    def handlers(self) -> list[Any]:
        v3, dash = monitoring_v3, monitoring_dashboard_v1
        return [
            grpc.method_handlers_generic_handler(
                POLICIES,
                {
                    "ListAlertPolicies": self._rpc(
                        POLICIES,
                        "ListAlertPolicies",
                        v3.ListAlertPoliciesRequest,
                        v3.ListAlertPoliciesResponse,
                        self._list_policies,
                    ),
                    "GetAlertPolicy": self._rpc(
                        POLICIES,
                        "GetAlertPolicy",
                        v3.GetAlertPolicyRequest,
                        Policy,
                        lambda r: self._policy(r.name),
                    ),
                    "CreateAlertPolicy": self._rpc(
                        POLICIES,
                        "CreateAlertPolicy",
                        v3.CreateAlertPolicyRequest,
                        Policy,
                        self._create_policy,
                    ),
                    "UpdateAlertPolicy": self._rpc(
                        POLICIES,
                        "UpdateAlertPolicy",
                        v3.UpdateAlertPolicyRequest,
                        Policy,
                        self._update_policy,
                    ),
                },
            ),
            grpc.method_handlers_generic_handler(
                DASHBOARDS,
                {
                    "ListDashboards": self._rpc(
                        DASHBOARDS,
                        "ListDashboards",
                        dash.ListDashboardsRequest,
                        dash.ListDashboardsResponse,
                        self._list_dashboards,
                    ),
                    "GetDashboard": self._rpc(
                        DASHBOARDS,
                        "GetDashboard",
                        dash.GetDashboardRequest,
                        Dashboard,
                        lambda r: self._dashboard(r.name),
                    ),
                    "CreateDashboard": self._rpc(
                        DASHBOARDS,
                        "CreateDashboard",
                        dash.CreateDashboardRequest,
                        Dashboard,
                        self._create_dashboard,
                    ),
                    "UpdateDashboard": self._rpc(
                        DASHBOARDS,
                        "UpdateDashboard",
                        dash.UpdateDashboardRequest,
                        Dashboard,
                        self._update_dashboard,
                    ),
                },
            ),
        ]

    def _rpc(
        self,
        service: str,
        method: str,
        request_type: Any,
        response_type: Any,
        serve: Callable[[Any], Any],
    ) -> Any:
        def locked(request: Any) -> Any:
            with self._lock:
                return serve(request)

        return recorded_rpc(
            self.recorder,
            self._grpc_codes,
            service,
            method,
            request_type,
            response_type,
            locked,
            self._authority,
        )

    # Alert policies

    def _list_policies(
        self, request: monitoring_v3.ListAlertPoliciesRequest
    ) -> monitoring_v3.ListAlertPoliciesResponse:
        project = _project(request.name)
        wanted = _filter_terms(request.filter)
        found = [
            _copy(policy)
            for name, policy in self.policies.items()
            if name.startswith(f"projects/{project}/") and all(t(policy) for t in wanted)
        ]
        return monitoring_v3.ListAlertPoliciesResponse(alert_policies=found, total_size=len(found))

    def _policy(self, name: str) -> Policy:
        if name not in self.policies:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"alert policy {name} not found")
        return _copy(self.policies[name])

    def _create_policy(self, request: monitoring_v3.CreateAlertPolicyRequest) -> Policy:
        project = _project(request.name)
        policy = _copy(request.alert_policy)
        if policy.name:
            raise _invalid("alert_policy.name is assigned by the service; leave it empty")
        self._check_policy(policy, project)
        policy.name = f"projects/{project}/alertPolicies/{next(self._ids)}"
        self._name_conditions(policy)
        if "enabled" not in policy:
            policy.enabled = wrappers_pb2.BoolValue(value=True)
        self.policies[policy.name] = policy
        return _copy(policy)

    def _update_policy(self, request: monitoring_v3.UpdateAlertPolicyRequest) -> Policy:
        live = self._policy(request.alert_policy.name)
        paths = list(request.update_mask.paths)
        unknown = sorted(set(paths) - _MUTABLE_POLICY_FIELDS)
        if unknown:
            raise _invalid(f"update_mask names fields that cannot be updated: {unknown}")
        updated = Policy.pb(live)
        source = Policy.pb(request.alert_policy)
        if paths:
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                source, updated, replace_message_field=True, replace_repeated_field=True
            )
        else:  # no mask: the request replaces the policy
            updated.CopyFrom(source)
        policy: Policy = Policy.wrap(updated)
        self._check_policy(policy, live.name.split("/")[1])
        self._name_conditions(policy)
        self.policies[policy.name] = policy
        return _copy(policy)

    def _check_policy(self, policy: Policy, project: str) -> None:
        if not policy.display_name:
            raise _invalid("alert_policy.display_name is required")
        if not 1 <= len(policy.conditions) <= 6:
            raise _invalid("an alert policy needs between 1 and 6 conditions")
        if len(policy.conditions) > 1 and not policy.combiner:
            raise _invalid("alert_policy.combiner is required with more than one condition")
        for key, value in policy.user_labels.items():
            if not (_LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(value)):
                raise _invalid(f"user label {key}={value} is not lowercase letters, digits, _ -")
        for channel in policy.notification_channels:
            if not channel.startswith(f"projects/{project}/notificationChannels/"):
                raise _invalid(f"notification channel {channel} is not in project {project}")
            if channel not in self.channels:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"notification channel {channel}")
        for condition in policy.conditions:
            _check_condition(condition)

    def _name_conditions(self, policy: Policy) -> None:
        for condition in policy.conditions:
            if not condition.name:
                condition.name = f"{policy.name}/conditions/{next(self._ids)}"

    # Dashboards

    def _list_dashboards(
        self, request: monitoring_dashboard_v1.ListDashboardsRequest
    ) -> monitoring_dashboard_v1.ListDashboardsResponse:
        prefix = f"projects/{_project(request.parent)}/"
        return monitoring_dashboard_v1.ListDashboardsResponse(
            dashboards=[_copy(d) for name, d in self.dashboards.items() if name.startswith(prefix)]
        )

    def _dashboard(self, name: str) -> Dashboard:
        if name not in self.dashboards:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"dashboard {name} not found")
        return _copy(self.dashboards[name])

    def _create_dashboard(self, request: monitoring_dashboard_v1.CreateDashboardRequest) -> Any:
        project = _project(request.parent)
        dashboard = _copy(request.dashboard)
        if dashboard.name or dashboard.etag:
            raise _invalid("a new dashboard's name and etag are the service's to assign")
        _check_dashboard(dashboard)
        dashboard.name = f"projects/{project}/dashboards/{uuid.uuid4()}"
        dashboard.etag = uuid.uuid4().hex
        self.dashboards[dashboard.name] = dashboard
        return _copy(dashboard)

    def _update_dashboard(self, request: monitoring_dashboard_v1.UpdateDashboardRequest) -> Any:
        live = self._dashboard(request.dashboard.name)
        dashboard = _copy(request.dashboard)
        if dashboard.etag != live.etag:
            raise Refused(
                grpc.StatusCode.ABORTED,
                f"etag {dashboard.etag!r} is not the dashboard's current one: read it again",
            )
        _check_dashboard(dashboard)
        dashboard.etag = uuid.uuid4().hex
        self.dashboards[dashboard.name] = dashboard
        return _copy(dashboard)


def _project(parent: str) -> str:
    match = re.fullmatch(r"projects/([^/]+)", parent)
    if not match:
        raise _invalid(f"{parent!r} is not projects/PROJECT")
    return match[1]


def _copy(message: M) -> M:
    """Nothing stored is shared with a request or a response."""
    copied: M = type(message).deserialize(type(message).serialize(message))
    return copied


def _filter_terms(text: str) -> list[Callable[[Policy], bool]]:
    """The `user_label.KEY = "V"` and `display_name = "V"` terms, joined by AND."""
    terms: list[Callable[[Policy], bool]] = []
    for term in filter(None, re.split(r"\s+AND\s+", text.strip())):
        match = _FILTER_TERM.fullmatch(term)
        if not match:
            raise _invalid(f"filter term {term!r} is not understood")
        _, key, value = match.groups()
        terms.append(_label_is(key, value) if key else _display_name_is(value))
    return terms


def _label_is(key: str, value: str) -> Callable[[Policy], bool]:
    return lambda policy: bool(policy.user_labels.get(key) == value)


def _display_name_is(value: str) -> Callable[[Policy], bool]:
    return lambda policy: bool(policy.display_name == value)


def _check_condition(condition: monitoring_v3.AlertPolicy.Condition) -> None:
    if not condition.display_name:
        raise _invalid("every condition needs a display_name")
    kinds = [
        kind
        for kind in (
            "condition_threshold",
            "condition_absent",
            "condition_matched_log",
            "condition_prometheus_query_language",
        )
        if kind in condition
    ]
    if len(kinds) != 1:
        raise _invalid(f"a condition has exactly one kind, this one has {kinds or 'none'}")
    if kinds == ["condition_prometheus_query_language"]:
        if not condition.condition_prometheus_query_language.query:
            raise _invalid("condition_prometheus_query_language.query is required")
        return
    if kinds != ["condition_threshold"]:
        return
    threshold = condition.condition_threshold
    if "metric.type" not in threshold.filter:
        raise _invalid(f"filter {threshold.filter!r} names no metric.type")
    if not threshold.comparison:
        raise _invalid("condition_threshold.comparison is required")
    if "duration" not in threshold:
        raise _invalid("condition_threshold.duration is required")
    if threshold.denominator_filter and "metric.type" not in threshold.denominator_filter:
        raise _invalid(f"denominator filter {threshold.denominator_filter!r} names no metric")
    for aggregation in [*threshold.aggregations, *threshold.denominator_aggregations]:
        _check_aggregation(aggregation)


def _check_aggregation(aggregation: Any) -> None:
    aligned = aggregation.per_series_aligner != 0  # ALIGN_NONE
    if aligned and aggregation.alignment_period.seconds < 60:
        raise _invalid("an aligner needs an alignment_period of at least 60 s")
    if aggregation.cross_series_reducer != 0 and not aligned:
        raise _invalid("a cross-series reducer needs a per-series aligner")


def _check_dashboard(dashboard: Dashboard) -> None:
    if not dashboard.display_name:
        raise _invalid("dashboard.display_name is required")
    layouts = [
        kind
        for kind in ("grid_layout", "mosaic_layout", "row_layout", "column_layout")
        if kind in dashboard
    ]
    if len(layouts) != 1:
        raise _invalid(f"a dashboard has exactly one layout, this one has {layouts or 'none'}")
    for widget in dashboard.grid_layout.widgets:
        for data_set in widget.xy_chart.data_sets:
            query = data_set.time_series_query
            if "time_series_filter" in query:
                filters = [query.time_series_filter.filter]
            elif "time_series_filter_ratio" in query:
                ratio = query.time_series_filter_ratio
                filters = [ratio.numerator.filter, ratio.denominator.filter]
            elif query.prometheus_query:
                continue
            else:
                raise _invalid(f"widget {widget.title!r} queries nothing")
            if not all("metric.type" in one for one in filters):
                raise _invalid(f"widget {widget.title!r} has a filter without metric.type")
