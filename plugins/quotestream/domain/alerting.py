"""Cloud Monitoring's alert policies and dashboard as plain data, built from one set of
thresholds (domain.thresholds.AlertThresholds) that the local health verdict
(quotestream_streaming) judges by as well: one number per limit, so Google's alerting and
Airflow's verdict cannot disagree about what is unhealthy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from quotestream.domain.thresholds import AlertThresholds

# The user label that marks a policy (and the dashboard) as provisioning's, valued with its key:
# found again by it, so a renamed or re-thresholded policy is updated, never duplicated.
MANAGED_LABEL = "quotestream_policy"
DASHBOARD_KEY = "dashboard"
DASHBOARD_NAME = "quotestream: pipeline"


@dataclass(frozen=True, slots=True)
class Aggregation:
    """Monitoring's per-series aligner and cross-series reducer, by their enum names."""

    aligner: str
    reducer: str = "REDUCE_NONE"
    alignment_s: int = 60


@dataclass(frozen=True, slots=True)
class AlertPolicySpec:
    key: str  # the MANAGED_LABEL value: stable even when the display name changes
    display_name: str
    metric_filter: str
    aggregation: Aggregation
    threshold: float
    duration_s: int
    documentation: str
    # A ratio condition: metric_filter's series over this one's (same aggregation).
    denominator_filter: str = ""
    # What Monitoring's aligners cannot compute, as PromQL instead of metric_filter: the
    # condition is this expression above the threshold for duration_s.
    promql: str = ""
    notification_channels: tuple[str, ...] = ()
    comparison: str = "COMPARISON_GT"
    # The AlertThresholds field the threshold comes from, and whether the local verdict judges
    # by it too.
    threshold_name: str = ""
    judged_locally: bool = False
    # The AlertThresholds field the duration comes from, where a limit is a time, not a level.
    duration_name: str = ""


@dataclass(frozen=True, slots=True)
class DashboardSpec:
    """One chart per policy, its threshold drawn in."""

    display_name: str
    policies: tuple[AlertPolicySpec, ...]
    key: str = DASHBOARD_KEY


def _filter(resource_type: str, metric: str, **labels: str) -> str:
    terms = [f'resource.type = "{resource_type}"', f'metric.type = "{metric}"']
    terms += [f'{label} = "{value}"' for label, value in labels.items()]
    return " AND ".join(terms)


def _dataflow(metric: str, job: str, **labels: str) -> str:
    return _filter(
        "dataflow_job",
        f"dataflow.googleapis.com/job/{metric}",
        **{"resource.labels.job_name": job},
        **labels,
    )


def _subscription(metric: str, subscription: str) -> str:
    return _filter(
        "pubsub_subscription",
        f"pubsub.googleapis.com/subscription/{metric}",
        **{"resource.labels.subscription_id": subscription},
    )


def _increase_over(job: str, counters: str, window_s: int) -> str:
    """What the job's counters (a regular expression of their names) added over the window.
    Dataflow reports a Beam counter as the job's running total, a GAUGE, which Monitoring's
    aligners will not difference (ALIGN_DELTA and ALIGN_RATE take DELTA or CUMULATIVE metrics);
    PromQL's delta() is made for gauges."""
    series = (
        'dataflow_googleapis_com:job_user_counter{monitored_resource="dataflow_job",'
        f'job_name="{job}",metric_name=~"{counters}"}}'
    )
    return f"sum(delta({series}[{window_s}s]))"


def _running_total(job: str, counter: str) -> str:
    """A Beam counter's running total in the job (0 before it is first counted)."""
    return (
        'sum(dataflow_googleapis_com:job_user_counter{monitored_resource="dataflow_job",'
        f'job_name="{job}",metric_name="{counter}"}}) or vector(0)'
    )


def alert_policies(
    thresholds: AlertThresholds,
    job_names: Mapping[str, str],
    subscription: str,
    api_service: str,
    notification_channels: tuple[str, ...] = (),
) -> tuple[AlertPolicySpec, ...]:
    """The policies, in a stable order: each job's lag and freshness, the load subscription's
    backlog, the load job's dead-letter share, the API's server errors, the extract reading
    its fallback source."""
    gauge = Aggregation("ALIGN_MAX", "REDUCE_MAX")
    rate = Aggregation("ALIGN_RATE", "REDUCE_SUM")
    load_job, window_s = job_names["load"], int(thresholds.dead_letter_window_s)
    policies = []
    for pipeline, job in job_names.items():
        policies += [
            AlertPolicySpec(
                key=f"{pipeline}-system-lag",
                display_name=f"quotestream: {pipeline} system lag",
                metric_filter=_dataflow("system_lag", job),
                aggregation=gauge,
                threshold=thresholds.max_system_lag_s,
                duration_s=300,
                documentation=f"{job} holds data it has not processed for too long: "
                "workers are short or a step is stuck (the job's page shows which).",
                threshold_name="max_system_lag_s",
            ),
            AlertPolicySpec(
                key=f"{pipeline}-data-freshness",
                display_name=f"quotestream: {pipeline} data freshness",
                metric_filter=_dataflow("data_watermark_age", job),
                aggregation=gauge,
                threshold=thresholds.max_data_freshness_s,
                duration_s=300,
                documentation=f"The newest data {job} has fully processed is too old: quotes "
                "reach BigQuery late or not at all.",
                threshold_name="max_data_freshness_s",
                judged_locally=pipeline == "load",
            ),
        ]
    policies += [
        AlertPolicySpec(
            key="subscription-backlog",
            display_name="quotestream: subscription backlog",
            metric_filter=_subscription("num_undelivered_messages", subscription),
            aggregation=gauge,
            threshold=thresholds.max_undelivered_messages,
            duration_s=600,
            documentation=f"{subscription} holds more unacknowledged messages than the load "
            "job keeps up with: is it running, and is it scaled?",
            threshold_name="max_undelivered_messages",
            judged_locally=True,
        ),
        AlertPolicySpec(
            key="oldest-unacked",
            display_name="quotestream: oldest unacked message",
            metric_filter=_subscription("oldest_unacked_message_age", subscription),
            aggregation=gauge,
            threshold=thresholds.max_oldest_unacked_s,
            duration_s=120,
            documentation=f"A message in {subscription} waits too long: the load job is down "
            "or one message fails again and again until it is dead-lettered.",
            threshold_name="max_oldest_unacked_s",
            judged_locally=True,
        ),
        AlertPolicySpec(
            key="load-dead-letter-rate",
            display_name="quotestream: load dead-letter rate",
            metric_filter="",
            # The share of the last window, as the local verdict judges it (the running totals
            # since the job started would hide a burst after a day of clean traffic): what the
            # gate dead-lettered and BigQuery refused, over what the job received.
            promql=(
                f"{_increase_over(load_job, 'dead_lettered|rejected_quotes', window_s)}"
                f" / {_increase_over(load_job, 'received', window_s)}"
            ),
            aggregation=gauge,
            threshold=thresholds.max_dead_letter_ratio,
            duration_s=300,
            documentation="Too large a share of the received messages is dead-lettered: "
            "the quotes_dead_letter table says why (its error column).",
            threshold_name="max_dead_letter_ratio",
            judged_locally=True,
        ),
        AlertPolicySpec(
            key="api-5xx-rate",
            display_name="quotestream: API 5xx rate",
            metric_filter=_filter(
                "cloud_run_revision",
                "run.googleapis.com/request_count",
                **{
                    "resource.labels.service_name": api_service,
                    "metric.labels.response_code_class": "5xx",
                },
            ),
            aggregation=rate,
            threshold=thresholds.max_api_5xx_per_s,
            duration_s=300,
            documentation=f"The market-data API ({api_service}) answers with server errors: "
            "the extract job and the push relay lose quotes meanwhile.",
            threshold_name="max_api_5xx_per_s",
        ),
        AlertPolicySpec(
            key="extract-on-fallback",
            display_name="quotestream: extract on its fallback source",
            metric_filter="",
            # Pairs switched to the fallback less those switched back: how many read it now.
            promql=(
                f"({_running_total(job_names['extract'], 'source_failovers')})"
                f" - ({_running_total(job_names['extract'], 'source_failbacks')})"
            ),
            aggregation=gauge,
            threshold=0,
            duration_s=int(thresholds.max_on_fallback_s),
            documentation="A pair has been read from the extract's fallback source for too "
            "long: its primary fails or is silent (the extract's log says which, and why). "
            "The fallback keeps quotes flowing; see the primary, and which intervals it "
            "served (operations: source failover).",
            duration_name="max_on_fallback_s",
        ),
    ]
    return tuple(replace(p, notification_channels=notification_channels) for p in policies)


def dashboard(policies: tuple[AlertPolicySpec, ...]) -> DashboardSpec:
    return DashboardSpec(DASHBOARD_NAME, policies)
