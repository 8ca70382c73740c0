"""Subscription backlog from Cloud Monitoring (Pub/Sub publishes it as metrics; the emulator
has no such thing)."""

from __future__ import annotations

import time

from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)

from quotestream.adapters.gcp.access import DEFAULT_ACCESS, ApiAccess

_METRICS = {
    "undelivered": "pubsub.googleapis.com/subscription/num_undelivered_messages",
    "oldest_unacked_s": "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
}


class CloudMonitoringBacklog:
    def __init__(self, project: str, *, access: ApiAccess = DEFAULT_ACCESS, window_s: int = 600):
        self._project = project
        # Monitoring's client speaks gRPC only.
        self._client = monitoring_v3.MetricServiceClient(
            **access.grpc_client_kwargs(MetricServiceGrpcTransport)
        )
        self._window_s = window_s

    def backlog(self, subscription: str) -> tuple[int | None, float | None]:
        undelivered = self._latest(_METRICS["undelivered"], subscription)
        oldest = self._latest(_METRICS["oldest_unacked_s"], subscription)
        return (
            None if undelivered is None else int(undelivered),
            None if oldest is None else float(oldest),
        )

    def _latest(self, metric: str, subscription: str) -> int | None:
        now = time.time()
        series = self._client.list_time_series(
            request={
                "name": f"projects/{self._project}",
                "filter": (
                    f'metric.type = "{metric}" AND '
                    f'resource.labels.subscription_id = "{subscription}"'
                ),
                "interval": {
                    "end_time": {"seconds": int(now)},
                    "start_time": {"seconds": int(now) - self._window_s},
                },
                "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
            }
        )
        for one in series:
            if one.points:  # points come newest first
                return int(one.points[0].value.int64_value)
        return None
