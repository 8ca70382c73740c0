"""Cloud Monitoring v3's ListTimeSeries over gRPC (the Python client has no REST transport):
the Pub/Sub subscription gauges the backlog checks read, newest point first, paged by points.
The same server serves the alert policies and dashboards provisioning manages (`alerting`)."""

from __future__ import annotations

import re
import threading
from concurrent import futures
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.api import metric_pb2
from google.cloud import monitoring_v3

from tests.support.standins.monitoring_alerts import AlertingStandIn, recorded_rpc
from tests.support.standins.permissions import Authority
from tests.support.standins.recorder import Recorder

SERVICE = "google.monitoring.v3.MetricService"
METHOD = "ListTimeSeries"
_METRIC = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
_SUBSCRIPTION = re.compile(r'resource\.labels\.subscription_id\s*=\s*"([^"]+)"')
# The canonical gRPC code of each HTTP status a fault may carry.
GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


class MonitoringStandIn:
    """Records into `recorder` as api "monitoring", method "ListTimeSeries", serves the
    recorder's faults for them as gRPC status codes, and checks callers with `authority`
    (the REST stand-ins', so that both hold one project's grants)."""

    def __init__(self, recorder: Recorder, authority: Authority) -> None:
        self.recorder = recorder
        self.page_size = 100_000  # Monitoring's own cap; a request's page_size lowers it
        self._lock = threading.Lock()
        # (metric type, subscription id) -> [(end time s, value)], newest first
        self._points: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._server: grpc.Server | None = None
        self.address = ""
        self._authority = authority
        self.alerting = AlertingStandIn(self.recorder, GRPC_CODES, authority)

    def start(self) -> None:
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: recorded_rpc(
                    self.recorder,
                    GRPC_CODES,
                    SERVICE,
                    METHOD,
                    monitoring_v3.ListTimeSeriesRequest,
                    monitoring_v3.ListTimeSeriesResponse,
                    self._page,
                    self._authority,
                )
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler, *self.alerting.handlers()))
        port = self._server.add_insecure_port("127.0.0.1:0")  # the kernel's free port, no race
        self._server.start()
        self.address = f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def reset(self) -> None:
        """Forgets the points, the policies and dashboards, the calls and faults of the shared
        recorder, and the shared grants (enforcement off)."""
        with self._lock:
            self._points.clear()
            self.page_size = 100_000
        self.alerting.reset()
        self.recorder.clear()
        self._authority.reset()

    def set_points(
        self, metric_type: str, subscription_id: str, points: list[tuple[int, int]]
    ) -> None:
        """`points` as (end time in epoch seconds, int64 value), in any order."""
        with self._lock:
            self._points[(metric_type, subscription_id)] = sorted(points, reverse=True)

    def _page(
        self, request: monitoring_v3.ListTimeSeriesRequest
    ) -> monitoring_v3.ListTimeSeriesResponse:
        """FULL views page by points, HEADERS views by series, as Monitoring documents."""
        metric = _METRIC.search(request.filter)
        subscription = _SUBSCRIPTION.search(request.filter)
        interval = monitoring_v3.ListTimeSeriesRequest.pb(request).interval
        start = interval.start_time.seconds if interval.HasField("start_time") else float("-inf")
        end = interval.end_time.seconds if interval.HasField("end_time") else float("inf")
        headers_only = request.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS
        units: list[tuple[tuple[str, str], tuple[int, int] | None]] = []
        with self._lock:
            for key, points in self._points.items():
                if (metric and key[0] != metric[1]) or (subscription and key[1] != subscription[1]):
                    continue
                inside = [point for point in points if start <= point[0] <= end]
                if inside:
                    units += [(key, None)] if headers_only else [(key, p) for p in inside]
        first = int(request.page_token or 0)
        last = first + min(request.page_size or self.page_size, self.page_size)
        series: dict[tuple[str, str], Any] = {}
        for key, point in units[first:last]:
            one = series.setdefault(key, self._series(request.name, key))
            if point is not None:
                one.points.append(
                    monitoring_v3.Point(
                        interval={"end_time": {"seconds": point[0]}},
                        value={"int64_value": point[1]},
                    )
                )
        return monitoring_v3.ListTimeSeriesResponse(
            time_series=list(series.values()),
            next_page_token=str(last) if last < len(units) else "",
        )

    @staticmethod
    def _series(name: str, key: tuple[str, str]) -> monitoring_v3.TimeSeries:
        return monitoring_v3.TimeSeries(
            metric={"type": key[0]},
            resource={
                "type": "pubsub_subscription",
                "labels": {"project_id": name.removeprefix("projects/"), "subscription_id": key[1]},
            },
            metric_kind=metric_pb2.MetricDescriptor.GAUGE,
            value_type=metric_pb2.MetricDescriptor.INT64,
        )
