"""Remove what provisioning created (and stop the jobs first): for test projects and demos."""

from __future__ import annotations

from quotestream.ports import JobRunner, MessagingAdmin, Warehouse
from quotestream.ports.jobs import StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings


class TeardownService:
    def __init__(
        self, runner: JobRunner, messaging: MessagingAdmin, warehouse: Warehouse, settings: Settings
    ) -> None:
        self._runner = runner
        self._messaging = messaging
        self._warehouse = warehouse
        self._settings = settings

    def run(self) -> list[str]:
        done = []
        for name in JOB_NAMES.values():
            job = self._runner.find(name)
            if job is not None and not job.state.terminal:
                self._runner.stop(name, StopMode.CANCEL)
                done.append(f"stopped job {name}")
        settings = self._settings
        # Every name provisioning ever used, dead-lettering or not: a project provisioned by
        # an earlier version on Google Cloud still has the dead-letter topic and its hold.
        for subscription in (settings.load_subscription, settings.dead_letter_subscription):
            if self._messaging.delete_subscription(subscription):
                done.append(f"deleted subscription {subscription}")
        for topic in (settings.quotes_topic, settings.dead_letter_topic):
            if self._messaging.delete_topic(topic):
                done.append(f"deleted topic {topic}")
        if self._warehouse.delete_dataset():
            done.append(f"deleted dataset {self._settings.dataset} and its tables")
        return done or ["nothing to remove"]
