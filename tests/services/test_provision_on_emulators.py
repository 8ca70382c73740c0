"""Provisioning against the real emulators: idempotent, additive, loud when incompatible."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from quotestream import bootstrap
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.schemas import QUOTES, Column
from quotestream.ports.resources import IncompatibleChange, Outcome
from quotestream.services.provision import ProvisionService
from quotestream.settings import Settings
from tests.support.builders import quote_dict

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(pubsub_emulator: ServiceProcess, bigquery_emulator: ServiceProcess) -> Settings:
    # A project of its own per test: the emulators are shared by the whole session.
    return Settings(project=f"prov-{uuid.uuid4().hex[:10]}", target="local", message_ordering=False)


@pytest.fixture
def service(settings: Settings) -> ProvisionService:
    return bootstrap.build_provision_service(settings)


def test_provisioning_twice_creates_once_then_changes_nothing(service: ProvisionService) -> None:
    first = service.run()
    assert [(r.kind, r.name, r.outcome) for r in first] == [
        ("pubsub topic", "quotes", Outcome.CREATED),
        ("pubsub topic", "quotes-dead-letter", Outcome.CREATED),
        ("pubsub subscription", "quotes-load", Outcome.CREATED),
        ("pubsub subscription", "quotes-dead-letter-hold", Outcome.CREATED),
        ("bigquery dataset", "quotestream", Outcome.CREATED),
        ("bigquery table", "quotes", Outcome.CREATED),
        ("bigquery table", "quotes_dead_letter", Outcome.CREATED),
        ("bigquery table", "quote_bars_1m", Outcome.CREATED),
        ("bigquery table", "dq_results", Outcome.CREATED),
        ("bigquery table", "dead_letter_replays", Outcome.CREATED),
    ]
    second = service.run()
    assert {r.outcome for r in second} == {Outcome.EXISTS}


def test_tables_are_partitioned_and_clustered_as_declared(
    service: ProvisionService, settings: Settings
) -> None:
    service.run()
    from google.cloud import bigquery

    client = bigquery.Client(
        project=settings.project,
        credentials=bootstrap.google_access(settings, "bigquery").credentials,
        client_options={"api_endpoint": settings.bigquery_emulator_host},
    )
    table = client.get_table(f"{settings.project}.{settings.dataset}.quotes")
    assert table.time_partitioning.field == "event_ts"
    assert table.clustering_fields == ["pair"]
    assert [f.name for f in table.schema] == list(QUOTES.column_names)
    assert {f.name: f.field_type for f in table.schema}["bid"] == "NUMERIC"


@pytest.mark.parametrize("ordering", [True, False])
def test_subscription_has_the_dead_letter_policy_and_the_ordering_asked_for(
    settings: Settings, ordering: bool
) -> None:
    settings = settings.model_copy(update={"message_ordering": ordering})
    bootstrap.build_provision_service(settings).run()
    subscriber = SubscriberClient()
    live = subscriber.get_subscription(
        subscription=subscriber.subscription_path(settings.project, "quotes-load")
    )
    assert live.enable_message_ordering is ordering
    assert live.dead_letter_policy.max_delivery_attempts == 5
    assert live.dead_letter_policy.dead_letter_topic.endswith("/topics/quotes-dead-letter")
    assert live.ack_deadline_seconds == 60


def test_on_google_cloud_the_dead_letter_policy_is_removed_from_the_load_subscription(
    settings: Settings,
) -> None:
    """Dataflow reads quotes-load, and dead-letter topics are not supported on a subscription
    Dataflow reads: a project provisioned with one loses it (the emulator plays Pub/Sub)."""
    from quotestream.adapters.gcp.pubsub import PubSubAdmin
    from quotestream.services.provision import load_subscription

    bootstrap.build_provision_service(settings).run()
    admin = PubSubAdmin(settings.project)
    on_gcp = settings.model_copy(update={"target": "gcp"})

    result = admin.ensure_subscription(load_subscription(on_gcp))

    assert (result.outcome, result.detail) == (Outcome.UPDATED, "dead_letter_policy")
    subscriber = SubscriberClient()
    live = subscriber.get_subscription(
        subscription=subscriber.subscription_path(settings.project, "quotes-load")
    )
    assert not live.dead_letter_policy.dead_letter_topic
    assert admin.ensure_subscription(load_subscription(on_gcp)).outcome is Outcome.EXISTS


def test_a_changed_ordering_is_refused_with_the_field_named(settings: Settings) -> None:
    bootstrap.build_provision_service(settings).run()
    ordered = settings.model_copy(update={"message_ordering": True})
    with pytest.raises(IncompatibleChange, match="quotes-load: enable_message_ordering"):
        bootstrap.build_provision_service(ordered).run()


def test_a_changed_ack_deadline_is_updated_in_place(settings: Settings) -> None:
    bootstrap.build_provision_service(settings).run()
    changed = settings.model_copy(update={"ack_deadline_s": 120})
    results = {r.name: r for r in bootstrap.build_provision_service(changed).run()}
    assert results["quotes-load"].outcome is Outcome.UPDATED
    assert "ack_deadline_seconds" in results["quotes-load"].detail
    again = {r.name: r for r in bootstrap.build_provision_service(changed).run()}
    assert again["quotes-load"].outcome is Outcome.EXISTS


def test_an_additive_column_is_applied_and_an_incompatible_change_is_refused(
    service: ProvisionService, settings: Settings
) -> None:
    service.run()
    warehouse = bootstrap.build_warehouse(settings)
    wider = dataclasses.replace(
        QUOTES, columns=(*QUOTES.columns, Column("venue", "STRING", "NULLABLE"))
    )
    updated = warehouse.ensure_table(wider)
    assert updated.outcome is Outcome.UPDATED
    assert "venue" in updated.detail
    assert warehouse.ensure_table(wider).outcome is Outcome.EXISTS

    retyped = dataclasses.replace(
        wider,
        columns=tuple(
            dataclasses.replace(c, type="FLOAT") if c.name == "bid" else c for c in wider.columns
        ),
    )
    with pytest.raises(IncompatibleChange, match=r"quotes\.bid is NUMERIC in BigQuery, FLOAT"):
        warehouse.ensure_table(retyped)
    with pytest.raises(IncompatibleChange, match=r"quotes\.venue exists in BigQuery but not"):
        warehouse.ensure_table(QUOTES)
    required = dataclasses.replace(
        wider, columns=(*wider.columns, Column("desk", "STRING", "REQUIRED"))
    )
    with pytest.raises(IncompatibleChange, match=r"quotes\.desk is new and REQUIRED"):
        warehouse.ensure_table(required)


def test_a_row_round_trips_once_per_insert_id_and_a_bad_row_gets_its_own_error(
    service: ProvisionService, settings: Settings
) -> None:
    service.run()
    warehouse = bootstrap.build_warehouse(settings)
    row = quote_dict()
    assert warehouse.insert_rows("quotes", [row], row_ids=[row["event_id"]]) == []
    assert warehouse.insert_rows("quotes", [row], row_ids=[row["event_id"]]) == []
    bad = {**quote_dict(event_ts_ms=1_795_000_000_123), "bid": "not a number"}
    errors = warehouse.insert_rows(
        "quotes", [quote_dict(source="other"), bad], row_ids=["good-2", bad["event_id"]]
    )
    assert [error["index"] for error in errors] == [1]
    rows = warehouse.query(
        "SELECT event_id, CAST(bid AS STRING) AS bid FROM {dataset}.quotes "
        "WHERE pair = @pair ORDER BY event_id",
        {"pair": "USD-BRL"},
    )
    assert sorted(r["event_id"] for r in rows) == sorted(
        [row["event_id"], quote_dict(source="other")["event_id"]]
    )


def test_a_message_nacked_five_times_lands_on_the_dead_letter_topic(
    service: ProvisionService, settings: Settings
) -> None:
    service.run()
    publisher, subscriber = PublisherClient(), SubscriberClient()
    publisher.publish(publisher.topic_path(settings.project, "quotes"), b"poison").result()
    load = subscriber.subscription_path(settings.project, "quotes-load")
    hold = subscriber.subscription_path(settings.project, "quotes-dead-letter-hold")
    deliveries, dead = 0, []
    deadline = time.monotonic() + 60
    # The emulator forwards on the pull that would make the sixth delivery: keep pulling both.
    while not dead and time.monotonic() < deadline:
        pulled = subscriber.pull(
            request={"subscription": load, "max_messages": 10, "return_immediately": True},
            timeout=10,
        )
        for item in pulled.received_messages:
            deliveries += 1
            subscriber.modify_ack_deadline(
                request={"subscription": load, "ack_ids": [item.ack_id], "ack_deadline_seconds": 0}
            )
        held = subscriber.pull(
            request={"subscription": hold, "max_messages": 10, "return_immediately": True},
            timeout=10,
        )
        dead += [item.message.data for item in held.received_messages]
        time.sleep(0.2)
    assert dead == [b"poison"]
    assert deliveries == 5
    after = subscriber.pull(
        request={"subscription": load, "max_messages": 10, "return_immediately": True}, timeout=10
    )
    assert not after.received_messages
