"""Provision Pub/Sub, BigQuery and (on Google Cloud) Cloud Monitoring's alerting: idempotent,
additive, loud about incompatible changes. Who may use these resources is not provisioning's
business: on Google Cloud `quotestream gcp bootstrap` grants it once, as an administrator, so
the account that runs the DAGs never holds a permission to change IAM."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from quotestream.domain.alerting import AlertPolicySpec, alert_policies, dashboard
from quotestream.domain.schemas import ALL_TABLES
from quotestream.ports import MessagingAdmin, Warehouse
from quotestream.ports.alerting import AlertingAdmin
from quotestream.ports.resources import ResourceResult, SubscriptionSpec
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings


def dead_lettering(settings: Settings) -> bool:
    """Whether Pub/Sub moves undeliverable messages aside: only for the local load, which
    leaves a message unacknowledged until its row is stored. Dataflow reads with its own
    source, with which Pub/Sub's dead-letter topics are not supported (Pub/Sub's "Handling
    message failures"): ack deadlines a busy job lets expire would count as delivery attempts
    and move healthy quotes aside. There the load's dead-letter table takes what cannot load."""
    return settings.target == "local"


def topics(settings: Settings) -> tuple[str, ...]:
    if dead_lettering(settings):
        return (settings.quotes_topic, settings.dead_letter_topic)
    return (settings.quotes_topic,)


def load_subscription(settings: Settings) -> SubscriptionSpec:
    dead_letter = dead_lettering(settings)
    return SubscriptionSpec(
        name=settings.load_subscription,
        topic=settings.quotes_topic,
        ack_deadline_s=settings.ack_deadline_s,
        dead_letter_topic=settings.dead_letter_topic if dead_letter else None,
        max_delivery_attempts=settings.max_delivery_attempts,
        ordered=settings.message_ordering,
    )


def subscriptions(settings: Settings) -> tuple[SubscriptionSpec, ...]:
    if not dead_lettering(settings):
        return (load_subscription(settings),)
    # Holds what the load subscription dead-letters: a topic without one would drop it.
    hold = SubscriptionSpec(
        name=settings.dead_letter_subscription,
        topic=settings.dead_letter_topic,
        ack_deadline_s=settings.ack_deadline_s,
    )
    return (load_subscription(settings), hold)


def monitoring_policies(settings: Settings) -> tuple[AlertPolicySpec, ...]:
    return alert_policies(
        settings.thresholds().alerting,
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
        alerting: AlertingAdmin | None = None,
    ):
        self._messaging = messaging
        self._warehouse = warehouse
        self._settings = settings
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

    def _steps(self) -> Iterator[ResourceResult]:
        for topic in topics(self._settings):
            yield self._messaging.ensure_topic(topic)
        for spec in subscriptions(self._settings):
            yield self._messaging.ensure_subscription(spec)
        yield self._warehouse.ensure_dataset()
        for table in ALL_TABLES:
            yield self._warehouse.ensure_table(table)
        if self._alerting is not None:
            policies = monitoring_policies(self._settings)
            for policy in policies:
                yield self._alerting.ensure_alert_policy(policy)
            yield self._alerting.ensure_dashboard(dashboard(policies))
