"""The composition root: settings -> adapters -> services.

DAG tasks, the API and the pipelines all build what they need here, so a change of target
(local emulators or a real project) is one setting, never an edit of the callers.
Adapters are imported inside the builders: importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quotestream.ports import MessagingAdmin, Publisher, QuoteSource, Warehouse
from quotestream.services.backfill import BackfillService
from quotestream.services.provision import ProvisionService
from quotestream.services.quality import DataQualityService
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


def _require_emulator(settings: Settings, variable: str, value: str | None) -> None:
    if settings.target == "local" and not value:
        raise ConfigurationError(
            f"target is local but {variable} is not set: start the local stack "
            "(`quotestream local up`) and load .local/env (`set -a; . .local/env; set +a`), "
            "or set QUOTESTREAM_TARGET=gcp"
        )


def build_publisher(settings: Settings) -> Publisher:
    _require_emulator(settings, "PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host)
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


def build_messaging_admin(settings: Settings) -> MessagingAdmin:
    _require_emulator(settings, "PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host)
    from quotestream.adapters.gcp.pubsub import PubSubAdmin

    return PubSubAdmin(settings.project, credentials=google_credentials(settings))


def build_warehouse(settings: Settings) -> Warehouse:
    _require_emulator(settings, "BIGQUERY_EMULATOR_HOST", settings.bigquery_emulator_host)
    from quotestream.adapters.gcp.bigquery import BigQueryWarehouse

    return BigQueryWarehouse(
        settings.project,
        settings.dataset,
        location=settings.bigquery_location,
        credentials=google_credentials(settings),
        api_endpoint=settings.bigquery_emulator_host if settings.target == "local" else None,
    )


def build_provision_service(settings: Settings) -> ProvisionService:
    return ProvisionService(build_messaging_admin(settings), build_warehouse(settings), settings)


def build_quote_source(
    settings: Settings, on_outcome: Callable[[str], None] = lambda _: None
) -> QuoteSource:
    from quotestream.adapters.api_client import HttpQuoteSource

    return HttpQuoteSource(settings.api_url, on_outcome=on_outcome)


def build_backfill_service(settings: Settings) -> BackfillService:
    return BackfillService(build_quote_source(settings), build_warehouse(settings), settings.pairs)


def build_data_quality_service(settings: Settings) -> DataQualityService:
    return DataQualityService(
        build_warehouse(settings), build_quote_source(settings), settings.pairs
    )
