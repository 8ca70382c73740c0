"""IAM on Pub/Sub topics and subscriptions, and who the project's Pub/Sub service agent is.

Over REST with its own transport: the data-plane client switches to the emulator when
PUBSUB_EMULATOR_HOST is set, and the emulator has no IAM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.cloud import resourcemanager_v3
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherRestTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberRestTransport

from quotestream.adapters.gcp.access import DEFAULT_ACCESS, ApiAccess
from quotestream.adapters.gcp.iam import grant
from quotestream.ports.resources import ResourceResult

_HOST = "pubsub.googleapis.com"


class PubSubIam:
    def __init__(
        self,
        project: str,
        *,
        access: ApiAccess = DEFAULT_ACCESS,
        projects_access: ApiAccess = DEFAULT_ACCESS,
    ) -> None:
        self._project = project
        host = access.endpoint or _HOST
        self._topics = PublisherClient(
            transport=PublisherRestTransport(host=host, credentials=access.credentials)
        )
        self._subscriptions = SubscriberClient(
            transport=SubscriberRestTransport(host=host, credentials=access.credentials)
        )
        self._projects_access = projects_access

    def service_agent(self) -> str:
        """The Pub/Sub service agent, named after the project's number."""
        projects = resourcemanager_v3.ProjectsClient(**self._projects_access.client_kwargs())
        number = projects.get_project(name=f"projects/{self._project}").name.split("/")[-1]
        return f"serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com"

    def grant_on_topic(self, topic: str, roles: Mapping[str, Sequence[str]]) -> ResourceResult:
        path = f"projects/{self._project}/topics/{topic}"
        return grant(self._topics, path, roles, f"topic {topic}")

    def grant_on_subscription(
        self, subscription: str, roles: Mapping[str, Sequence[str]]
    ) -> ResourceResult:
        path = f"projects/{self._project}/subscriptions/{subscription}"
        return grant(self._subscriptions, path, roles, f"subscription {subscription}")
