"""The composition root: settings -> adapters -> services.

DAG tasks, the API and the pipelines all build what they need here, so a change of target
(local emulators or a real project) is one setting, never an edit of the callers.
Adapters are imported inside the builders: importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from quotestream.ports import Publisher
from quotestream.services.relay import QuoteRelay
from quotestream.settings import Settings


class ConfigurationError(RuntimeError):
    pass


def google_credentials(settings: Settings) -> Any:
    """Anonymous credentials against the emulators; Application Default Credentials on GCP."""
    if settings.target == "gcp":
        return None
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def build_publisher(settings: Settings) -> Publisher:
    if settings.target == "local" and not settings.pubsub_emulator_host:
        raise ConfigurationError(
            "target is local but PUBSUB_EMULATOR_HOST is not set: start the local stack "
            "(`quotestream local up`) and `source .local/env`, or set QUOTESTREAM_TARGET=gcp"
        )
    from quotestream.adapters.gcp.pubsub import PubSubPublisher

    return PubSubPublisher(
        settings.project, credentials=google_credentials(settings), ordered=settings.relay_ordered
    )


def build_relay(settings: Settings, publisher: Publisher | None = None) -> QuoteRelay:
    return QuoteRelay(
        publisher or build_publisher(settings),
        settings.quotes_topic,
        settings.relay_capacity,
        ordered=settings.relay_ordered,
    )
