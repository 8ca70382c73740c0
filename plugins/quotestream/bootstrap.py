"""The composition root: settings -> adapters -> services.

DAG tasks, the API and the pipelines all build what they need here, so a change of target
(local emulators or a real project) is one setting, never an edit of the callers.
Adapters are imported inside the builders: importing this module stays cheap.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from quotestream.ports import (
    JobRunner,
    MessagingAdmin,
    Publisher,
    QuoteSource,
    ServiceDeployer,
    TopicTap,
    Warehouse,
)
from quotestream.ports.queries import AccountingQueries, ResumePoints, StoredRowLookups
from quotestream.ports.writes import TableWriter
from quotestream.services.accounting import AccountingService
from quotestream.services.backfill import BackfillService
from quotestream.services.provision import ProvisionService
from quotestream.services.quality import DataQualityService
from quotestream.services.relay import QuoteRelay
from quotestream.services.replay import DeadLetterReplayService
from quotestream.services.streaming import (
    HealthLimits,
    RestartService,
    SourceWatch,
    StreamingService,
)
from quotestream.services.teardown import TeardownService
from quotestream.settings import Settings

if TYPE_CHECKING:
    from quotestream.adapters.gcp.access import ApiAccess
    from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
    from quotestream.adapters.local.stack import LocalStack
    from quotestream.services.cockpit import CockpitService


class ConfigurationError(RuntimeError):
    pass


RESUME_QUERY_TIMEOUT_S = 30.0
# A lookup unanswered this long is asked again: a query job BigQuery lost (an emulator
# restarted under it) is otherwise polled for ever, and the load with it.
LOOKUP_QUERY_TIMEOUT_S = 30.0


def google_access(settings: Settings, api: str) -> ApiAccess:
    """Credentials and endpoint for one of GOOGLE_APIS: anonymous against the emulators;
    on gcp the Airflow connection's (inside a task) or Application Default Credentials."""
    from quotestream.adapters.gcp.access import ApiAccess, google_credentials

    endpoint = settings.google_api_endpoints.get(api)
    if settings.target == "local":
        from google.auth.credentials import AnonymousCredentials

        if api == "bigquery":
            endpoint = settings.bigquery_emulator_host
        return ApiAccess(AnonymousCredentials(), endpoint)  # type: ignore[no-untyped-call]
    chain = settings.impersonation_chains.get(api, ())
    return ApiAccess(google_credentials(settings.gcp_connection_id, chain), endpoint)


def _require_emulator(settings: Settings, variable: str, value: str | None) -> None:
    if settings.target == "local" and not value:
        raise ConfigurationError(
            f"target is local but {variable} is not set: start the local stack "
            "(`quotestream local up`) and load .local/env (`set -a; . .local/env; set +a`), "
            "or set QUOTESTREAM_TARGET=gcp"
        )


def _require_answering(what: str, address: str | None) -> None:
    if not address:
        return  # the builders say which variable is missing
    location = urlsplit(address if "//" in address else f"//{address}")
    try:
        socket.create_connection((location.hostname, location.port), timeout=2).close()
    except OSError as error:
        raise ConfigurationError(
            f"{what} at {location.netloc} does not answer ({error.strerror or error}): "
            "is the local stack up? `quotestream local status` says, `quotestream local up` "
            "restarts what stopped"
        ) from None


def build_publisher(settings: Settings, ordered: bool | None = None) -> Publisher:
    """A batched publisher; `ordered` (default: the relay's setting) allows ordering keys."""
    _require_emulator(settings, "PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host)
    from quotestream.adapters.gcp.pubsub import PubSubPublisher

    return PubSubPublisher(
        settings.project,
        credentials=google_access(settings, "pubsub").credentials,
        ordered=settings.relay_ordered if ordered is None else ordered,
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

    return PubSubAdmin(settings.project, credentials=google_access(settings, "pubsub").credentials)


def build_warehouse(settings: Settings) -> Warehouse:
    return _bigquery_warehouse(settings)


def build_table_writer(settings: Settings) -> TableWriter:
    """The load's writer, as `bigquery_writer` chooses (ports/writes.py says what each
    guarantees)."""
    from quotestream.adapters.gcp.bigquery_write import (
        InsertAllTableWriter,
        StorageWriteTableWriter,
    )
    from quotestream.domain.schemas import LOADED_TABLES

    if settings.bigquery_writer == "insert_all":
        return InsertAllTableWriter(_bigquery_warehouse(settings))
    _require_emulator(
        settings, "BIGQUERY_STORAGE_EMULATOR_HOST", settings.bigquery_storage_emulator_host
    )
    return StorageWriteTableWriter(
        settings.project,
        settings.dataset,
        LOADED_TABLES,
        credentials=google_access(settings, "bigquery").credentials,
        emulator_host=(
            settings.bigquery_storage_emulator_host if settings.target == "local" else None
        ),
    )


def build_stored_row_lookups(settings: Settings) -> StoredRowLookups:
    """What the load asks before it writes or settles a message."""
    from quotestream.adapters.gcp.bigquery_queries import BigQueryStoredRowLookups

    return BigQueryStoredRowLookups(
        _bigquery_warehouse(settings, query_timeout_s=LOOKUP_QUERY_TIMEOUT_S)
    )


def resume_points_factory(settings: Settings) -> Callable[[], ResumePoints] | None:
    """What builds the extract's resume points (on its workers, when a job starts): None for
    a local extract with no BigQuery emulator set, which has no `quotes` to resume from, and
    for an extract reading a stream (OANDA's), which has no past to fetch from a resume point:
    its pairs then start a few seconds back, as on a first launch, without waiting on a
    query."""
    if settings.extract_source == "oanda":
        return None
    if settings.target == "local" and not settings.bigquery_emulator_host:
        return None
    return partial(build_resume_points, settings)


def build_resume_points(settings: Settings) -> ResumePoints:
    from quotestream.adapters.gcp.bigquery_queries import BigQueryResumePoints

    # A job start waits on it: bounded, and tried again by the extract when it fails.
    return BigQueryResumePoints(
        _bigquery_warehouse(settings, query_timeout_s=RESUME_QUERY_TIMEOUT_S)
    )


def build_accounting_queries(settings: Settings) -> AccountingQueries:
    from quotestream.adapters.gcp.bigquery_queries import BigQueryAccountingQueries

    return BigQueryAccountingQueries(_bigquery_warehouse(settings))


def _bigquery_warehouse(
    settings: Settings, query_timeout_s: float | None = None
) -> BigQueryWarehouse:
    _require_emulator(settings, "BIGQUERY_EMULATOR_HOST", settings.bigquery_emulator_host)
    from quotestream.adapters.gcp.bigquery import BigQueryWarehouse

    access = google_access(settings, "bigquery")
    return BigQueryWarehouse(
        settings.project,
        settings.dataset,
        location=settings.bigquery_location,
        credentials=access.credentials,
        api_endpoint=access.endpoint,
        query_timeout_s=query_timeout_s,
    )


def build_provision_service(settings: Settings) -> ProvisionService:
    if settings.target == "local":
        # A client against a stopped emulator retries for minutes: say so at once instead.
        _require_answering("the Pub/Sub emulator", settings.pubsub_emulator_host)
        _require_answering("the BigQuery emulator", settings.bigquery_emulator_host)
    alerting = None
    if settings.target == "gcp":
        from quotestream.adapters.gcp.monitoring_alerts import CloudMonitoringAlerting

        # The emulators have no Monitoring: alerting is provisioned on Google Cloud only.
        alerting = CloudMonitoringAlerting(
            settings.project, access=google_access(settings, "monitoring")
        )
    return ProvisionService(
        build_messaging_admin(settings), build_warehouse(settings), settings, alerting
    )


def build_quote_source(
    settings: Settings,
    on_outcome: Callable[[str], None] = lambda _: None,
    *,
    live: bool = False,
    kind: str | None = None,
) -> QuoteSource:
    """The source `kind` names (api, oanda); by default the market-data API's client, and for
    the extract (`live`) the source `extract_source` names: OANDA's pricing stream has no
    history for the backfill or the reconciliation."""
    if kind is None:
        kind = settings.extract_source if live else "api"
    if kind == "oanda":
        from quotestream.adapters.oanda import Backoff, OandaPricingStream, SharedOandaStream

        token = settings.oanda_token
        assert token is not None  # the settings refuse oanda without one
        # One connection per worker process, whatever number of copies of the step it runs.
        return SharedOandaStream(
            (settings.oanda_stream_url, settings.oanda_account_id, settings.pairs),
            lambda: OandaPricingStream(
                settings.oanda_stream_url,
                settings.oanda_account_id,
                token.get_secret_value(),
                settings.pairs,
                silence_timeout_s=settings.oanda_silence_timeout_s,
                backoff=Backoff(settings.oanda_backoff_initial_s, settings.oanda_backoff_max_s),
            ),
            on_outcome,
        )
    from quotestream.adapters.api_client import HttpQuoteSource

    # On Cloud Run the API is private: every call carries an identity token for its URL.
    auth = None
    if settings.target == "gcp":
        _require_api_url(settings)
        from quotestream.adapters.gcp.identity import IdentityTokens

        auth = IdentityTokens(settings.api_url, google_access(settings, "run").credentials)
    return HttpQuoteSource(settings.api_url, on_outcome=on_outcome, auth=auth)


def build_subscriber(settings: Settings) -> Any:
    from google.cloud.pubsub_v1 import SubscriberClient

    return SubscriberClient(credentials=google_access(settings, "pubsub").credentials)


# Each service's query port shares the BigQuery client of the warehouse it is given with.
def build_backfill_service(settings: Settings) -> BackfillService:
    from quotestream.adapters.gcp.bigquery_queries import BigQueryBackfillWrites

    warehouse = _bigquery_warehouse(settings)
    return BackfillService(
        build_quote_source(settings),
        warehouse,
        BigQueryBackfillWrites(warehouse),
        settings.pairs,
        api_source=settings.stored_source("api"),
    )


def build_data_quality_service(settings: Settings) -> DataQualityService:
    from quotestream.adapters.gcp.bigquery_queries import BigQueryQualityQueries

    warehouse = _bigquery_warehouse(settings)
    return DataQualityService(
        BigQueryQualityQueries(warehouse),
        warehouse,
        build_quote_source(settings),
        settings.pairs,
        settings.thresholds().quality,
        api_source=settings.stored_source("api"),
    )


def build_replay_service(settings: Settings) -> DeadLetterReplayService:
    from quotestream.adapters.gcp.bigquery_queries import (
        BigQueryReplayQueries,
        BigQueryStoredRowLookups,
    )

    warehouse = _bigquery_warehouse(settings)
    return DeadLetterReplayService(
        BigQueryReplayQueries(warehouse),
        BigQueryStoredRowLookups(warehouse),
        warehouse,
        settings.pairs,
    )


def repo_root(settings: Settings | None = None) -> Path:
    """The clone the local target runs from (its beam_pipelines/ and emulators/): the one
    this package is imported from, unless `local_checkout` names another (the core installed
    from its wheel, as Composer installs it)."""
    configured = settings.local_checkout if settings else ""
    root = Path(configured) if configured else Path(__file__).resolve().parents[2]
    if not (root / "beam_pipelines").is_dir():
        raise ConfigurationError(
            f"no beam_pipelines/ in {root}: the local target needs a clone "
            "(set QUOTESTREAM_LOCAL_CHECKOUT when quotestream is installed from its wheel)"
        )
    return root


def local_state_dir(settings: Settings) -> Path:
    """Relative to the clone, not to wherever a scheduler or worker was started."""
    configured = Path(settings.local_state_dir)
    return configured if configured.is_absolute() else repo_root(settings) / configured


def _local_stack(settings: Settings) -> LocalStack:
    from quotestream.adapters.local.stack import LocalStack

    return LocalStack(local_state_dir(settings), repo_root(settings), settings.project)


def _require(settings: Settings, *names: str) -> None:
    missing = _missing(settings, *names)
    if missing:
        raise ConfigurationError(f"target gcp needs {missing}")


def _missing(settings: Settings, *names: str) -> str:
    """The unset ones of `names`, as their environment variables, comma-separated."""
    return ", ".join(f"QUOTESTREAM_{name.upper()}" for name in names if not getattr(settings, name))


def _require_api_url(settings: Settings) -> None:
    problem = _api_url_problem(settings)
    if problem:
        raise ConfigurationError(problem)


def _api_url_problem(settings: Settings) -> str | None:
    location = urlsplit(settings.api_url)
    host = location.hostname or ""
    try:
        address = ipaddress.ip_address(host)
        local = address.is_loopback or address.is_unspecified
    except ValueError:
        local = host in {"", "localhost"}
    if local or location.scheme != "https":
        return (
            f"target gcp needs QUOTESTREAM_API_URL, the Cloud Run service's https URL (the "
            f"quotestream_deploy_api DAG prints it); it is {settings.api_url!r}, which no "
            "Dataflow worker or Composer task can reach"
        )
    return None


def build_job_runner(settings: Settings) -> JobRunner:
    if settings.target == "gcp":
        from quotestream.adapters.gcp.dataflow import DataflowJobRunner

        # Checked at launch only: finding, draining and cancelling jobs need none of these.
        # Without a service account Dataflow would run the job as the project's default
        # Compute Engine account, with whatever that account may do.
        missing = _missing(
            settings,
            "dataflow_templates",
            "dataflow_temp_location",
            "dataflow_image",
            "dataflow_service_account",
        )
        problems = [f"target gcp needs {missing} to launch jobs"] if missing else []
        problems += [problem] if (problem := _api_url_problem(settings)) else []
        prefix = settings.dataflow_templates.rstrip("/")
        environment: dict[str, Any] = {
            "temp_location": settings.dataflow_temp_location,
            "enable_streaming_engine": True,
            "sdk_container_image": settings.dataflow_image,
            "service_account_email": settings.dataflow_service_account,
            "max_workers": settings.dataflow_max_workers,
            "machine_type": settings.dataflow_machine_type,
        }
        for field in ("network", "subnetwork"):
            if value := getattr(settings, f"dataflow_{field}"):
                environment[field] = value
        return DataflowJobRunner(
            settings.project,
            settings.region,
            {kind: f"{prefix}/{kind}_quotes.json" for kind in ("load", "extract")},
            {"settings": settings.for_workers()},
            environment,
            access=google_access(settings, "dataflow"),
            cannot_launch="; ".join(problems) or None,
        )
    from quotestream.adapters.local.job_runner import LocalJobRunner

    return LocalJobRunner(
        local_state_dir(settings),
        repo_root(settings),
        python=settings.local_python or sys.executable,
    )


def build_streaming_service(settings: Settings) -> StreamingService:
    backlog = None
    if settings.target == "gcp":
        from quotestream.adapters.gcp.monitoring import CloudMonitoringBacklog

        backlog = CloudMonitoringBacklog(
            settings.project, access=google_access(settings, "monitoring")
        )
    from quotestream.adapters.gcp.bigquery_queries import BigQueryHealthQueries

    warehouse = _bigquery_warehouse(settings)
    sources = None
    if settings.extract_fallback_source is not None:
        from quotestream.adapters.gcp.bigquery_views import BigQueryPipelineViews

        primary = settings.stored_source(settings.extract_source)
        sources = SourceWatch(BigQueryPipelineViews(warehouse), primary)
    return StreamingService(
        build_job_runner(settings),
        BigQueryHealthQueries(warehouse),
        settings.load_subscription,
        backlog,
        limits=HealthLimits(settings.thresholds().alerting),
        sources=sources,
    )


def build_restart_service(settings: Settings) -> RestartService:
    # Dataflow's states change in seconds, and each poll is a call against the API's quota.
    return RestartService(
        build_job_runner(settings), poll_s=2.0 if settings.target == "gcp" else 0.5
    )


def build_deployer(settings: Settings) -> ServiceDeployer:
    if settings.target == "gcp":
        # Without its own account the service would run as the default Compute Engine one.
        _require(settings, "api_image", "api_service_account")
        from quotestream.adapters.gcp.cloud_run import CloudRunDeployer

        env = {
            "QUOTESTREAM_TARGET": "gcp",
            "QUOTESTREAM_PROJECT": settings.project,
            "QUOTESTREAM_QUOTES_TOPIC": settings.quotes_topic,
            "QUOTESTREAM_PAIRS": ",".join(settings.pairs),
            "QUOTESTREAM_MARKET_SEED": str(settings.market_seed),
        }
        return CloudRunDeployer(
            settings.project,
            settings.region,
            settings.api_service,
            settings.api_image,
            env,
            service_account=settings.api_service_account,
            api_key_secret=settings.api_key_secret,
            access=google_access(settings, "run"),
            secrets_access=google_access(settings, "secretmanager"),
        )
    from quotestream.adapters.local.api_deployer import LocalApiDeployer

    return LocalApiDeployer(_local_stack(settings))


def build_teardown_service(settings: Settings) -> TeardownService:
    return TeardownService(
        build_job_runner(settings),
        build_messaging_admin(settings),
        build_warehouse(settings),
        settings,
    )


def build_topic_tap(settings: Settings) -> TopicTap:
    """A ledger of what is published on `quotes` from now on (for the demo and `bench load`)."""
    _require_emulator(settings, "PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host)
    from quotestream.adapters.gcp.pubsub_tap import PubSubTopicTap

    return PubSubTopicTap(
        settings.project,
        settings.quotes_topic,
        credentials=google_access(settings, "pubsub").credentials,
    )


def build_accounting_service(settings: Settings, since_ms: int) -> AccountingService:
    return AccountingService(
        build_accounting_queries(settings), since_ms, build_stored_row_lookups(settings)
    )


# A reading of the page's figures runs about eight queries one after another.
COCKPIT_QUERY_TIMEOUT_S = 30.0


def build_cockpit_service(settings: Settings) -> CockpitService:
    """The operator page's figures: the DAGs' job runner and health verdict (the streaming
    service, as `quotestream_streaming` builds it), and the stored bars (as the quality check
    reads them) and the page's read model over one BigQuery client of their own."""
    from quotestream.adapters.gcp.bigquery_queries import BigQueryQualityQueries
    from quotestream.adapters.gcp.bigquery_views import BigQueryPipelineViews
    from quotestream.services.cockpit import CockpitService

    warehouse = _bigquery_warehouse(settings, query_timeout_s=COCKPIT_QUERY_TIMEOUT_S)
    streaming = build_streaming_service(settings)
    return CockpitService(
        build_job_runner(settings),
        streaming,
        BigQueryQualityQueries(warehouse),
        BigQueryPipelineViews(warehouse),
        settings.pairs,
    )
