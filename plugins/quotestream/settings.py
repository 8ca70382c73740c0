"""One settings object drives every adapter, the API, the pipelines and the DAGs.

Values come from the environment (`QUOTESTREAM_*`), which on Composer is set from Airflow
variables or Secret Manager, and locally from `.local/env`.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from quotestream.domain.pairs import DEFAULT_PAIRS, PAIR_CATALOG, split_pairs
from quotestream.domain.thresholds import AlertThresholds, QualityThresholds, Thresholds

# The Google APIs the adapters call, by their service names (the first label of the host).
GOOGLE_APIS = (
    "bigquery",
    "cloudresourcemanager",
    "dataflow",
    "monitoring",
    "pubsub",
    "run",
    "secretmanager",
)


def _comma_list(text: str) -> tuple[str, ...]:
    """How the environment writes a list: "a, b" -> ("a", "b")."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


_AIRFLOW_ACCESS = {"gcp_connection_id", "impersonation_chains"}
# What the extract's oldest fetched quote may take to reach the load and still be in its
# freshness horizon (settings.extract_max_lookback_s against max_quote_age_s).
LOOKBACK_SPARE_S = 600


class Settings(BaseSettings):
    # Errors never repeat a value: pydantic would print a refused relay key as its input, and
    # the error reaches task logs, failure alerts and the page's 503. Messages name the value
    # themselves where that is safe.
    model_config = SettingsConfigDict(
        env_prefix="QUOTESTREAM_", extra="ignore", hide_input_in_errors=True
    )

    target: Literal["local", "gcp"] = "local"
    project: str = "quotestream-local"
    region: str = "us-central1"
    dataset: str = "quotestream"
    quotes_topic: str = "quotes"
    dead_letter_topic: str = "quotes-dead-letter"
    load_subscription: str = "quotes-load"
    # Holds what the load subscription dead-letters: a topic without one would drop it.
    dead_letter_subscription: str = "quotes-dead-letter-hold"
    max_delivery_attempts: Annotated[int, Field(ge=5, le=100)] = 5
    # Deliver each pair's quotes in publish order. The Pub/Sub emulator cannot dead-letter
    # from an ordered subscription (it fails the pull), so `local up` turns this off.
    message_ordering: bool = True
    ack_deadline_s: Annotated[int, Field(ge=10, le=600)] = 60
    max_quote_age_s: Annotated[
        int,
        Field(
            ge=3600,
            description=(
                "The live load's freshness horizon: a quote whose event time is older than "
                "this when the load reads it becomes a dead letter `too_old` (payload kept; "
                "the backfill and the dead-letter replay take history). Six hours covers the "
                "hour the extract catches up after a relaunch, redeliveries, and a load job "
                "down for a few hours with its backlog kept in Pub/Sub; every old quote the "
                "load takes costs a lookup of its id in BigQuery. At least 3600, and at least "
                "`extract_max_lookback_s` plus `extract_resume_overlap_s` plus 600 s to "
                "deliver: 4260 with their defaults (a lower value is refused)."
            ),
        ),
    ] = 6 * 3600
    extract_max_lookback_s: Annotated[
        int,
        Field(
            ge=60,
            description=(
                "How far back the extract reaches: a job that starts resumes each pair at the "
                "newest event time `quotes` holds for it within this look-back, and after a "
                "source outage a job catches up at most this much. Older gaps are the "
                "backfill's. It must stay within the live load's freshness horizon "
                "(`max_quote_age_s`, with `extract_resume_overlap_s` and 10 minutes to spare), "
                "or what it fetches would be dead-lettered `too_old`."
            ),
        ),
    ] = 3600
    extract_resume_overlap_s: Annotated[
        int,
        Field(
            ge=0,
            description=(
                "A starting extract job fetches again this much before each pair's newest "
                "stored quote: quotes its predecessor fetched but had not got published when "
                "it was cancelled, while later ones were. A poll spans about "
                "`--poll_interval_s`; the load stores a re-fetched quote once (by event id)."
            ),
        ),
    ] = 60
    bigquery_location: str = "US"
    bigquery_writer: Annotated[
        Literal["insert_all", "storage_write"],
        Field(
            description=(
                "How the load writes BigQuery: `storage_write` appends to committed streams "
                "of the Storage Write API at offsets the job keeps in its state (a retried "
                "write is found at its offset, exactly once), at about an eighth of the "
                "price of `insert_all` (or free); `insert_all` uses legacy streaming "
                "inserts, whose insert-id dedup lasts about a minute (the writer looks up "
                "what it cannot vouch for). Locally the BigQuery emulator serves both "
                "(`BIGQUERY_STORAGE_EMULATOR_HOST` names its gRPC port)."
            ),
        ),
    ] = "storage_write"
    bigquery_write_shards: Annotated[
        int | None,
        Field(
            ge=1,
            le=64,
            description=(
                "Shards each of the load's tables is written in: each shard appends to its own "
                "stream, one batch at a time, so this bounds how many appends of a table run "
                "at once on Dataflow. Unset: 4 on gcp; 1 on local, whose runner writes on "
                "one thread, so that more shards would only split each batch into more "
                "requests (a 20,000-message drain ran 1.5 times as fast with one)."
            ),
        ),
    ] = None

    # Locally `local up` writes it; on gcp it must be the Cloud Run service's URL (the
    # deploy DAG prints it): the jobs, backfill and reconciliation call it.
    api_url: str = "http://127.0.0.1:8080"
    # No key is built in: without one the push relay refuses every request. Several keys,
    # comma-separated, give each producer its own (and its own rate limit), or let a key be
    # rotated while the old one still works.
    api_key: SecretStr | None = None

    # Where the local target keeps job state files and logs (the local stand-in for Dataflow).
    local_state_dir: str = ".local"
    # The local target's jobs run from a clone (its beam_pipelines/) on a Python with Beam:
    # by default the clone this package is imported from and this interpreter. Set both where
    # the core runs from its wheel in a runtime without Beam, as in Composer's.
    local_checkout: str = ""
    local_python: str = ""
    # Airflow connection holding the alert webhook (extra.webhook_url) and e-mail settings.
    alerts_connection_id: str = "quotestream_alerts"
    # A run of these DAGs still unfinished this long after it started is stopped by the
    # scheduler (the DAG's dagrun_timeout) and alerts: a stuck query, a hung API call.
    data_quality_deadline_s: Annotated[int, Field(ge=1)] = 30 * 60
    backfill_deadline_s: Annotated[int, Field(ge=1)] = 2 * 3600
    # The dead-letter replay reads, and holds in memory, at most this many hours of dead
    # letters at once: a longer range is replayed in consecutive chunks of this size.
    replay_max_range_h: Annotated[float, Field(gt=0)] = 1.0

    # Google Cloud only. Flex-template specs live at <prefix>/{load,extract}_quotes.json.
    dataflow_templates: str = ""
    dataflow_temp_location: str = ""
    dataflow_service_account: str = ""
    # The flex-template image, which is also the workers' image (sdk_container_image): without
    # it Dataflow runs Beam's stock image, in which no worker can import quotestream.
    dataflow_image: str = ""
    # Where the workers run: a project without the `default` network cannot launch without
    # one of these (a subnetwork is enough: regions/REGION/subnetworks/NAME or its URL).
    dataflow_network: str = ""
    dataflow_subnetwork: str = ""
    # Per job. Dataflow's own ceiling with Streaming Engine is 100 workers: a cost risk.
    dataflow_max_workers: Annotated[int, Field(ge=1, le=1000)] = 3
    dataflow_machine_type: str = "n1-standard-2"
    api_service: str = "quotestream-api"
    api_image: str = ""
    api_service_account: str = ""
    # Secret Manager secret holding the push relay's key; Cloud Run mounts it as an env var.
    api_key_secret: str = ""
    # Who else may call the private API besides the Dataflow workers and the Composer account
    # (`quotestream gcp bootstrap` grants them roles/run.invoker on the service):
    # `serviceAccount:...` members, comma-separated.
    api_invokers: Annotated[tuple[str, ...], NoDecode] = ()

    # Inside Airflow the Google adapters take their credentials from this connection (through
    # the google provider's hook, as Composer DAGs do); elsewhere from Application Default
    # Credentials. Per API (see GOOGLE_APIS), a chain of service accounts to impersonate,
    # the last one acting: JSON such as {"dataflow": ["quotestream-composer@P.iam..."]}.
    gcp_connection_id: str = "google_cloud_default"
    impersonation_chains: dict[str, tuple[str, ...]] = {}
    # Per API, another endpoint than Google's public one (Private Service Connect, or a local
    # stand-in): JSON such as {"dataflow": "https://dataflow-myendpoint.p.googleapis.com"}.
    google_api_endpoints: dict[str, str] = {}

    market_seed: int = 20261124
    # Comma-separated in the environment: QUOTESTREAM_PAIRS=USD-BRL,EUR-BRL
    pairs: Annotated[tuple[str, ...], NoDecode] = DEFAULT_PAIRS
    # The `source` of the simulated market's quotes (the API's; part of `event_id`): not where
    # the extract reads, but whose stored quotes it resumes from when it reads the API.
    quote_source: str = "sim"
    extract_source: Annotated[
        Literal["api", "oanda"],
        Field(
            description=(
                "Where the extract reads quotes: `api`, quotestream's market-data API (whose "
                "history the backfill and the reconciliation read, whatever this says), or "
                "`oanda`, OANDA's v20 pricing stream for the configured pairs as OANDA "
                "instruments (EUR-USD is EUR_USD), stored with source `oanda` "
                "([architecture](architecture.md#a-second-source-oandas-pricing-stream)); "
                "on the local target only (refused with `gcp`: Dataflow's workers would need "
                "the token from Secret Manager, not built)."
            )
        ),
    ] = "api"
    extract_fallback_source: Annotated[
        Literal["api", "oanda"] | None,
        Field(
            description=(
                "Where each pair is read from while `extract_source` fails or answers nothing "
                "for `extract_failover_after_s` (none by default: the extract waits for it). "
                "The primary is asked again every `extract_failback_probe_s` and its first "
                "quotes switch the pair back; every switch is logged and counted "
                "([operations](operations.md#source-failover))."
            )
        ),
    ] = None
    # How long the primary may fail or answer nothing before a pair switches to the fallback:
    # a real feed can be quiet for seconds in a calm market.
    extract_failover_after_s: Annotated[float, Field(gt=0)] = 15.0
    # While a pair reads the fallback, the primary is asked for it this often.
    extract_failback_probe_s: Annotated[float, Field(gt=0)] = 30.0
    # OANDA's stream host: the practice one by default (live: https://stream-fxtrade.oanda.com).
    oanda_stream_url: str = "https://stream-fxpractice.oanda.com"
    # The v20 account whose prices are streamed (required when the extract reads oanda, as its
    # source or its fallback).
    oanda_account_id: str = ""
    # The v20 API token, sent as `Authorization: Bearer`; from the environment
    # (QUOTESTREAM_OANDA_TOKEN) or a secret store, never from the repository.
    oanda_token: SecretStr | None = None
    # Nothing at all (not even a heartbeat) for this long: the stream is dropped and reopened.
    oanda_silence_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # A stream that fails to open or drops is reopened after a delay that doubles with each
    # failure in a row from the first, up to the second, each drawn from [50 %, 100 %) of it.
    oanda_backoff_initial_s: Annotated[float, Field(gt=0)] = 1.0
    # The longest wait before the OANDA stream is reopened (see oanda_backoff_initial_s).
    oanda_backoff_max_s: Annotated[float, Field(gt=0)] = 60.0

    relay_capacity: Annotated[int, Field(ge=1)] = 20_000
    relay_max_batch: Annotated[int, Field(ge=1)] = 1_000
    relay_max_body_bytes: Annotated[int, Field(ge=1024)] = 2_000_000
    relay_ordered: bool = False
    # Cloud Run sends SIGTERM and kills 10 s later; drain within that.
    relay_shutdown_timeout_s: Annotated[float, Field(gt=0)] = 8.0
    # Token bucket per relay key on POST /v1/quotes, and one per address for requests without
    # a valid key (429 beyond it); 0 turns it off.
    # A full batch (1000 quotes) costs the gate ~12 ms of CPU: 20/s holds one client to a
    # quarter of a core, 20,000 quotes/s (the relay's whole queue) at most.
    relay_rate_limit_per_s: Annotated[float, Field(ge=0)] = 20.0
    relay_rate_limit_burst: Annotated[int, Field(ge=1)] = 40

    # Google Cloud only: where Cloud Monitoring's alerts go, comma-separated resource names
    # projects/P/notificationChannels/ID.
    alert_notification_channels: Annotated[tuple[str, ...], NoDecode] = ()
    # Overrides of domain.thresholds.AlertThresholds by name, JSON such as
    # {"max_oldest_unacked_s": 900}: the alert policies and the local verdict both follow.
    alert_thresholds: dict[str, float] = {}
    # Overrides of domain.thresholds.QualityThresholds by name, JSON such as
    # {"min_volume_ratio": 0.8}: what fails a data-quality check (quotestream_data_quality).
    quality_thresholds: dict[str, float] = {}

    @field_validator("alert_notification_channels", mode="before")
    @classmethod
    def _split_channels(cls, value: object) -> object:
        return _comma_list(value) if isinstance(value, str) else value

    @field_validator("alert_notification_channels")
    @classmethod
    def _channel_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not re.fullmatch(r"projects/[^/\s]+/notificationChannels/[^/\s]+", channel):
                raise ValueError(
                    f"{channel!r} is not a notification channel's resource name "
                    "(projects/PROJECT/notificationChannels/ID)"
                )
        return value

    @field_validator("alert_thresholds")
    @classmethod
    def _known_alert_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        AlertThresholds().overridden(value)
        return value

    @field_validator("quality_thresholds")
    @classmethod
    def _known_quality_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        QualityThresholds().overridden(value)
        return value

    @field_validator("pairs", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if isinstance(value, str):
            return split_pairs(value)
        return value

    @field_validator("pairs")
    @classmethod
    def _known_pairs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [pair for pair in value if pair not in PAIR_CATALOG]
        if unknown:
            known = ", ".join(PAIR_CATALOG)
            raise ValueError(f"unknown pairs {', '.join(unknown)}; known: {known}")
        if not value:
            raise ValueError("at least one pair is needed")
        return value

    @field_validator("api_invokers", mode="before")
    @classmethod
    def _split_members(cls, value: object) -> object:
        return _comma_list(value) if isinstance(value, str) else value

    @field_validator("api_invokers")
    @classmethod
    def _private_api(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            if member in ("allUsers", "allAuthenticatedUsers"):
                raise ValueError(f"{member} would make the API public: name the callers")
            if ":" not in member:
                raise ValueError(f"{member!r} is not an IAM member (serviceAccount:..., user:...)")
        return value

    @field_validator("impersonation_chains", mode="before")
    @classmethod
    def _split_chains(cls, value: object) -> object:
        if isinstance(value, dict):
            return {
                api: _comma_list(chain) if isinstance(chain, str) else chain
                for api, chain in value.items()
            }
        return value

    @field_validator("impersonation_chains", "google_api_endpoints")
    @classmethod
    def _known_apis(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(value) - set(GOOGLE_APIS))
        if unknown:
            raise ValueError(f"unknown APIs {', '.join(unknown)}; known: {', '.join(GOOGLE_APIS)}")
        return value

    @field_validator("google_api_endpoints")
    @classmethod
    def _private_plain_http(cls, value: dict[str, str]) -> dict[str, str]:
        # Credentials travel with every call: in clear only to this machine.
        for api, endpoint in value.items():
            location = urlsplit(endpoint)
            if location.scheme not in ("http", "https") or not location.hostname:
                raise ValueError(f"{api}: endpoint {endpoint!r} is not an http(s) URL")
            if location.scheme == "http" and location.hostname not in ("127.0.0.1", "localhost"):
                raise ValueError(f"{api}: plain http only to a loopback address, not {endpoint}")
        return value

    @field_validator("oanda_token")
    @classmethod
    def _plausible_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Sent as a header: no whitespace or control characters, and not a placeholder.
        if value is not None:
            token = value.get_secret_value()
            if len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token):
                raise ValueError(
                    "the OANDA token needs at least 16 characters, none of them whitespace"
                )
        return value

    @field_validator("api_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            keys = value.get_secret_value().split(",")
            if any(len(key.strip()) < 16 for key in keys):
                raise ValueError(
                    "each API key needs at least 16 characters (leave it unset to disable)"
                )
        return value

    @model_validator(mode="after")
    def _a_named_project_on_gcp(self) -> Settings:
        # Not taken from the Airflow connection: DAG files name it in their assets' URIs at
        # parse time, when no connection may be read.
        if self.target == "gcp" and "project" not in self.model_fields_set:
            raise ValueError("target gcp needs QUOTESTREAM_PROJECT, the project to work in")
        return self

    @model_validator(mode="after")
    def _look_back_within_the_horizon(self) -> Settings:
        room = self.max_quote_age_s - self.extract_resume_overlap_s - LOOKBACK_SPARE_S
        if self.extract_max_lookback_s > room:
            raise ValueError(
                f"extract_max_lookback_s ({self.extract_max_lookback_s}) plus "
                f"extract_resume_overlap_s ({self.extract_resume_overlap_s}) plus "
                f"{LOOKBACK_SPARE_S} s to deliver must fit max_quote_age_s "
                f"({self.max_quote_age_s}): the live load would dead-letter as too_old what "
                "the extract fetches at the start of its look-back. Lower the look-back "
                f"to at most {room} or raise the horizon"
            )
        return self

    @property
    def extract_reads_oanda(self) -> bool:
        return "oanda" in (self.extract_source, self.extract_fallback_source)

    def write_shards(self) -> int:
        """`bigquery_write_shards`, or the target's default."""
        if self.bigquery_write_shards is not None:
            return self.bigquery_write_shards
        return 4 if self.target == "gcp" else 1

    def stored_source(self, kind: str) -> str:
        """The `source` the quotes read from `kind` (api, oanda) are stored with."""
        return self.quote_source if kind == "api" else kind

    @model_validator(mode="after")
    def _fallback_differs(self) -> Settings:
        if self.extract_fallback_source == self.extract_source:
            raise ValueError(
                f"extract_fallback_source is extract_source ({self.extract_source}): a "
                "fallback is another source"
            )
        if self.extract_failover_after_s >= self.extract_max_lookback_s:
            # The fallback is asked for all the primary left unserved: within the look-back.
            raise ValueError(
                f"extract_failover_after_s ({self.extract_failover_after_s:g}) must be under "
                f"extract_max_lookback_s ({self.extract_max_lookback_s})"
            )
        return self

    @model_validator(mode="after")
    def _oanda_configured(self) -> Settings:
        if self.extract_reads_oanda and self.target == "gcp":
            raise ValueError(
                "an extract reading oanda runs on the local target only: on Dataflow the "
                "workers would need OANDA's token from Secret Manager, which is not built yet "
                "(the settings a job gets carry no secret)"
            )
        if self.extract_reads_oanda and not (self.oanda_account_id and self.oanda_token):
            raise ValueError(
                "an extract reading oanda needs QUOTESTREAM_OANDA_ACCOUNT_ID and "
                "QUOTESTREAM_OANDA_TOKEN"
            )
        location = urlsplit(self.oanda_stream_url)
        loopback = location.hostname in ("127.0.0.1", "localhost")
        if location.scheme != "https" and not (location.scheme == "http" and loopback):
            # The token travels with every request: in clear only to this machine.
            raise ValueError(
                f"oanda_stream_url must be https (plain http only to a loopback address), "
                f"not {self.oanda_stream_url!r}"
            )
        if self.oanda_backoff_max_s < self.oanda_backoff_initial_s:
            raise ValueError("oanda_backoff_max_s is below oanda_backoff_initial_s")
        return self

    @model_validator(mode="after")
    def _batch_fits_the_relay(self) -> Settings:
        if self.relay_max_batch > self.relay_capacity:
            raise ValueError(
                f"relay_max_batch ({self.relay_max_batch}) exceeds relay_capacity "
                f"({self.relay_capacity}): such a batch could never be accepted"
            )
        return self

    def thresholds(self) -> Thresholds:
        """Both families of limits: the defaults with these settings' overrides."""
        return Thresholds(
            AlertThresholds().overridden(self.alert_thresholds),
            QualityThresholds().overridden(self.quality_thresholds),
        )

    def relay_keys(self) -> tuple[str, ...]:
        """The push relay's keys (see api_key); none when the relay is off."""
        if self.api_key is None:
            return ()
        return tuple(key.strip() for key in self.api_key.get_secret_value().split(","))

    def for_workers(self) -> str:
        """These settings as JSON for jobs that have no environment of ours (flex templates):
        all of them, so a worker never falls back to a default, except secrets (the relay's
        key), which no worker needs, and how Airflow reaches Google: workers act as their own
        account, never through the connection's or the Composer account's impersonation."""
        return self.model_dump_json(exclude=self.secret_fields() | _AIRFLOW_ACCESS)

    @classmethod
    def secret_fields(cls) -> set[str]:
        """The settings whose values are secret: typed SecretStr (or optionally so)."""
        return {
            name
            for name, field in cls.model_fields.items()
            if SecretStr in get_args(field.annotation) or field.annotation is SecretStr
        }

    @property
    def pubsub_emulator_host(self) -> str | None:
        # Read by the Google client itself; surfaced here so errors can name it.
        return os.environ.get("PUBSUB_EMULATOR_HOST") or None

    @property
    def bigquery_emulator_host(self) -> str | None:
        """A URL such as http://127.0.0.1:9050; the BigQuery client is pointed at it."""
        return os.environ.get("BIGQUERY_EMULATOR_HOST") or None

    @property
    def bigquery_storage_emulator_host(self) -> str | None:
        """host:port of the BigQuery emulator's gRPC server (its Storage Write API)."""
        return os.environ.get("BIGQUERY_STORAGE_EMULATOR_HOST") or None
