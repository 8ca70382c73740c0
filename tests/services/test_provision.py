"""Provisioning's order and results over fakes: on Google Cloud the alert policies, then the
dashboard, after every other resource; the emulators get none. Dead-lettering only locally."""

from __future__ import annotations

import pytest

from quotestream.domain.alerting import DASHBOARD_KEY
from quotestream.domain.schemas import TableSpec
from quotestream.ports.resources import Outcome, ResourceResult, SubscriptionSpec
from quotestream.services.provision import ProvisionService, monitoring_policies
from quotestream.settings import Settings
from tests.support.fake_alerting import InMemoryAlertingAdmin

pytestmark = pytest.mark.unit

CHANNEL = "projects/p/notificationChannels/7"


class PresentMessaging:
    def __init__(self) -> None:
        self.subscriptions: list[SubscriptionSpec] = []

    def ensure_topic(self, name: str) -> ResourceResult:
        return ResourceResult("pubsub topic", name, Outcome.EXISTS)

    def ensure_subscription(self, spec: SubscriptionSpec) -> ResourceResult:
        self.subscriptions.append(spec)
        return ResourceResult("pubsub subscription", spec.name, Outcome.EXISTS)


class PresentWarehouse:
    def ensure_dataset(self) -> ResourceResult:
        return ResourceResult("bigquery dataset", "quotestream", Outcome.EXISTS)

    def ensure_table(self, table: TableSpec) -> ResourceResult:
        return ResourceResult("bigquery table", table.name, Outcome.EXISTS)


def service(
    settings: Settings,
    alerting: InMemoryAlertingAdmin | None,
    messaging: PresentMessaging | None = None,
) -> ProvisionService:
    return ProvisionService(
        messaging or PresentMessaging(),  # type: ignore[arg-type]
        PresentWarehouse(),  # type: ignore[arg-type]
        settings,
        alerting=alerting,
    )


def gcp(**values: object) -> Settings:
    return Settings(target="gcp", project="p", alert_notification_channels=CHANNEL, **values)


def test_the_policies_then_the_dashboard_come_after_every_other_resource() -> None:
    alerting = InMemoryAlertingAdmin()
    results = service(gcp(), alerting).run()

    kinds = [result.kind for result in results]
    first_alerting = kinds.index("alert policy")
    assert "alert policy" not in kinds[:first_alerting]
    assert kinds[first_alerting:] == ["alert policy"] * 9 + ["dashboard"]
    assert "bigquery table" in kinds[:first_alerting]
    assert {r.outcome for r in results[first_alerting:]} == {Outcome.CREATED}
    (board,) = alerting.dashboards.values()
    assert board.policies == tuple(alerting.policies.values()), "one chart per policy"
    assert all(p.notification_channels == (CHANNEL,) for p in alerting.policies.values())


def test_a_second_run_reports_exists_and_writes_nothing() -> None:
    alerting = InMemoryAlertingAdmin()
    service(gcp(), alerting).run()
    written = list(alerting.writes)

    again = service(gcp(), alerting).run()

    assert {result.outcome for result in again} == {Outcome.EXISTS}
    assert alerting.writes == written


def test_a_threshold_override_updates_its_policy_and_the_dashboard_only() -> None:
    alerting = InMemoryAlertingAdmin()
    service(gcp(), alerting).run()

    results = service(gcp(alert_thresholds={"max_api_5xx_per_s": 2.0}), alerting).run()

    updated = [(r.kind, r.name) for r in results if r.outcome is Outcome.UPDATED]
    assert updated == [
        ("alert policy", "quotestream: API 5xx rate"),
        ("dashboard", "quotestream: pipeline"),
    ]
    assert alerting.policies["api-5xx-rate"].threshold == 2.0
    assert DASHBOARD_KEY in alerting.dashboards


def test_without_an_alerting_admin_nothing_of_monitoring_is_provisioned() -> None:
    results = service(Settings(), None).run()
    assert not {"alert policy", "dashboard"} & {result.kind for result in results}


def test_the_policies_follow_the_settings_names() -> None:
    settings = gcp(load_subscription="other-sub", api_service="other-api")
    filters = " ".join(policy.metric_filter for policy in monitoring_policies(settings))
    assert 'subscription_id = "other-sub"' in filters
    assert 'service_name = "other-api"' in filters


def test_dataflows_subscription_has_no_dead_letter_policy_on_google_cloud_only() -> None:
    on_gcp, local = PresentMessaging(), PresentMessaging()
    gcp_results = service(gcp(), InMemoryAlertingAdmin(), on_gcp).run()
    local_results = service(Settings(), None, local).run()

    (load,) = on_gcp.subscriptions
    assert (load.name, load.dead_letter_topic) == ("quotes-load", None)
    assert [r.name for r in gcp_results if r.kind == "pubsub topic"] == ["quotes"]
    assert [(s.name, s.dead_letter_topic) for s in local.subscriptions] == [
        ("quotes-load", "quotes-dead-letter"),
        ("quotes-dead-letter-hold", None),
    ]
    assert [r.name for r in local_results if r.kind == "pubsub topic"] == [
        "quotes",
        "quotes-dead-letter",
    ]
