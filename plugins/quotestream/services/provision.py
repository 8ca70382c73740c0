"""Provision Pub/Sub, BigQuery and (on Google Cloud) Cloud Monitoring's alerting: idempotent,
additive, loud about incompatible changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from quotestream.domain.alerting import (
    AlertPolicySpec,
    AlertThresholds,
    alert_policies,
    dashboard,
)
from quotestream.domain.schemas import ALL_TABLES
from quotestream.ports import MessagingAdmin, MessagingIam, Warehouse
from quotestream.ports.alerting import AlertingAdmin
from quotestream.ports.resources import ResourceResult, SubscriptionSpec, service_account_members
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings


def subscriptions(settings: Settings) -> tuple[SubscriptionSpec, ...]:
    return (
        SubscriptionSpec(
            name=settings.load_subscription,
            topic=settings.quotes_topic,
            ack_deadline_s=settings.ack_deadline_s,
            dead_letter_topic=settings.dead_letter_topic,
            max_delivery_attempts=settings.max_delivery_attempts,
            ordered=settings.message_ordering,
        ),
        SubscriptionSpec(
            name=settings.dead_letter_subscription,
            topic=settings.dead_letter_topic,
            ack_deadline_s=settings.ack_deadline_s,
        ),
    )


def alert_thresholds(settings: Settings) -> AlertThresholds:
    """The defaults with the settings' overrides: the alert policies and the local health
    verdict both take their limits from here."""
    return AlertThresholds().overridden(settings.alert_thresholds)


def monitoring_policies(settings: Settings) -> tuple[AlertPolicySpec, ...]:
    return alert_policies(
        alert_thresholds(settings),
        JOB_NAMES,
        settings.load_subscription,
        settings.api_service,
        settings.alert_notification_channels,
    )


class ProvisionService:
    def __init__(
        self,
        messaging: MessagingAdmin,
        warehouse: Warehouse,
        settings: Settings,
        iam: MessagingIam | None = None,
        alerting: AlertingAdmin | None = None,
    ):
        self._messaging = messaging
        self._warehouse = warehouse
        self._settings = settings
        self._iam = iam
        self._alerting = alerting

    def run(
        self, report: Callable[[ResourceResult], None] = lambda _: None
    ) -> list[ResourceResult]:
        """Bring every resource to the declared state; `report` sees each result as it comes."""
        results = []
        for result in self._steps():
            report(result)
            results.append(result)
        return results

    def _grants(self, iam: MessagingIam) -> Iterator[ResourceResult]:
        """Pub/Sub's service agent dead-letters: it publishes to the dead-letter topic and
        acknowledges what it moved there. The jobs and the API get their roles on the
        resources they use, not on the project."""
        settings = self._settings
        agent = [iam.service_agent()]
        workers = service_account_members(settings.dataflow_service_account)
        api = service_account_members(settings.api_service_account)
        yield iam.grant_on_topic(
            settings.quotes_topic,
            {"roles/pubsub.publisher": workers + api, "roles/pubsub.viewer": api},
        )
        yield iam.grant_on_topic(settings.dead_letter_topic, {"roles/pubsub.publisher": agent})
        yield iam.grant_on_subscription(
            settings.load_subscription, {"roles/pubsub.subscriber": agent + workers}
        )

    def _steps(self) -> Iterator[ResourceResult]:
        yield self._messaging.ensure_topic(self._settings.quotes_topic)
        yield self._messaging.ensure_topic(self._settings.dead_letter_topic)
        for spec in subscriptions(self._settings):
            yield self._messaging.ensure_subscription(spec)
        if self._iam is not None:
            yield from self._grants(self._iam)
        yield self._warehouse.ensure_dataset()
        for table in ALL_TABLES:
            yield self._warehouse.ensure_table(table)
        if self._alerting is not None:
            policies = monitoring_policies(self._settings)
            for policy in policies:
                yield self._alerting.ensure_alert_policy(policy)
            yield self._alerting.ensure_dashboard(dashboard(policies))
