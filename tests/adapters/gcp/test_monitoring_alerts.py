"""The alert policies and the dashboard through the real Monitoring clients, over gRPC, against
the Monitoring stand-in: created once, left alone when identical, updated with a mask (policies)
or the current etag (the dashboard) when they differ."""

from __future__ import annotations

import dataclasses

import pytest
from google.auth.credentials import AnonymousCredentials

from quotestream.adapters.gcp.access import ApiAccess
from quotestream.adapters.gcp.monitoring_alerts import CloudMonitoringAlerting, MonitoringRefused
from quotestream.domain.alerting import (
    MANAGED_LABEL,
    AlertPolicySpec,
    AlertThresholds,
    alert_policies,
    dashboard,
)
from quotestream.ports.resources import Outcome
from quotestream.services.streaming import JOB_NAMES
from tests.support.standins.monitoring import MonitoringStandIn

pytestmark = pytest.mark.integration

CHANNEL = "projects/proj/notificationChannels/123"
WRITES = ("CreateAlertPolicy", "UpdateAlertPolicy", "CreateDashboard", "UpdateDashboard")


def policies(
    thresholds: AlertThresholds | None = None, channels: tuple[str, ...] = ()
) -> tuple[AlertPolicySpec, ...]:
    return alert_policies(
        thresholds or AlertThresholds(), JOB_NAMES, "quotes-load", "quotestream-api", channels
    )


@pytest.fixture
def alerting(monitoring: MonitoringStandIn) -> CloudMonitoringAlerting:
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    access = ApiAccess(anonymous, f"http://{monitoring.address}")
    return CloudMonitoringAlerting("proj", access=access)


def provision(
    alerting: CloudMonitoringAlerting, specs: tuple[AlertPolicySpec, ...]
) -> list[Outcome]:
    outcomes = [alerting.ensure_alert_policy(spec).outcome for spec in specs]
    return [*outcomes, alerting.ensure_dashboard(dashboard(specs)).outcome]


def writes(monitoring: MonitoringStandIn) -> list[str]:
    return [c.method for c in monitoring.recorder.of("monitoring") if c.method in WRITES]


def test_a_first_run_creates_every_policy_and_the_dashboard_a_second_writes_nothing(
    alerting: CloudMonitoringAlerting, monitoring: MonitoringStandIn
) -> None:
    specs = policies()

    assert provision(alerting, specs) == [Outcome.CREATED] * (len(specs) + 1)
    stored = {p.user_labels[MANAGED_LABEL]: p for p in monitoring.alerting.policies.values()}
    assert sorted(stored) == sorted(spec.key for spec in specs)
    lag = stored["load-system-lag"].conditions[0].condition_threshold
    assert lag.filter == (
        'resource.type = "dataflow_job" AND '
        'metric.type = "dataflow.googleapis.com/job/system_lag" AND '
        'resource.labels.job_name = "quotestream-load"'
    )
    assert (lag.threshold_value, lag.duration.total_seconds()) == (300.0, 300.0)
    share = stored["load-dead-letter-rate"].conditions[0].condition_prometheus_query_language
    assert 'job_name="quotestream-load",metric_name=~"dead_lettered|rejected_quotes"' in (
        share.query
    )
    assert share.query.endswith(") > 0.05")
    assert share.duration.total_seconds() == 300.0
    (board,) = monitoring.alerting.dashboards.values()
    assert [w.title for w in board.grid_layout.widgets] == [s.display_name for s in specs]

    monitoring.recorder.clear()
    assert provision(alerting, specs) == [Outcome.EXISTS] * (len(specs) + 1)
    assert writes(monitoring) == []
    lists = monitoring.recorder.of("monitoring", "ListAlertPolicies")
    assert {c.body["filter"] for c in lists} == {
        f'user_label.{MANAGED_LABEL} = "{spec.key}"' for spec in specs
    }


def test_a_changed_threshold_updates_that_policy_by_mask_and_redraws_the_dashboard(
    alerting: CloudMonitoringAlerting, monitoring: MonitoringStandIn
) -> None:
    provision(alerting, policies())
    monitoring.recorder.clear()
    stricter = AlertThresholds(max_oldest_unacked_s=120.0)

    outcomes = provision(alerting, policies(stricter))

    keys = [spec.key for spec in policies(stricter)]
    updated = {key for key, outcome in zip(keys, outcomes, strict=False) if outcome != "exists"}
    assert updated == {"oldest-unacked"}
    assert outcomes[-1] == Outcome.UPDATED, "the dashboard draws the threshold"
    (update,) = monitoring.recorder.of("monitoring", "UpdateAlertPolicy")
    assert update.body["update_mask"] == "conditions"  # a FieldMask's JSON form
    assert update.body["alert_policy"]["user_labels"] == {MANAGED_LABEL: "oldest-unacked"}
    (policy,) = [
        p
        for p in monitoring.alerting.policies.values()
        if p.display_name.endswith("unacked message")
    ]
    assert policy.conditions[0].condition_threshold.threshold_value == 120.0
    assert len(monitoring.alerting.policies) == len(keys), "updated in place, none added"
    (dashboard_update,) = monitoring.recorder.of("monitoring", "UpdateDashboard")
    assert dashboard_update.body["dashboard"]["etag"], "sent with the etag it read"


def test_notification_channels_are_attached_and_a_foreign_one_is_refused_by_name(
    alerting: CloudMonitoringAlerting, monitoring: MonitoringStandIn
) -> None:
    monitoring.alerting.channels.add(CHANNEL)
    provision(alerting, policies(channels=(CHANNEL,)))
    assert {tuple(p.notification_channels) for p in monitoring.alerting.policies.values()} == {
        (CHANNEL,)
    }

    (spec, *_) = policies(channels=("projects/proj/notificationChannels/999",))
    spec = dataclasses.replace(spec, key="another")
    with pytest.raises(
        MonitoringRefused,
        match=r"'quotestream: extract system lag' in projects/proj: 404 .*Channels/999",
    ):
        alerting.ensure_alert_policy(spec)


def test_a_refusal_names_the_policy_and_what_to_check(
    alerting: CloudMonitoringAlerting, monitoring: MonitoringStandIn
) -> None:
    monitoring.recorder.fail("monitoring", "CreateAlertPolicy", ".*", 403)
    (spec, *_) = policies()

    with pytest.raises(MonitoringRefused) as refused:
        alerting.ensure_alert_policy(spec)

    message = str(refused.value)
    assert "'quotestream: extract system lag' in projects/proj" in message
    assert "403" in message
    assert "roles/monitoring.alertPolicyEditor" in message
    assert monitoring.alerting.policies == {}


def test_an_edited_dashboard_is_replaced_only_with_the_etag_it_was_read_with(
    alerting: CloudMonitoringAlerting, monitoring: MonitoringStandIn
) -> None:
    specs = policies()
    provision(alerting, specs)
    (name,) = monitoring.alerting.dashboards
    monitoring.alerting.dashboards[name].display_name = "renamed by hand"

    assert alerting.ensure_dashboard(dashboard(specs)).outcome is Outcome.UPDATED
    assert monitoring.alerting.dashboards[name].display_name == "quotestream: pipeline"
    (update,) = monitoring.recorder.of("monitoring", "UpdateDashboard")
    assert update.body["dashboard"]["name"] == name
