"""A warehouse stops waiting for a BigQuery that does not answer, a query when built with a
query timeout, an insert always: the emulator behind a proxy that holds the request, never
forwarding it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from google.auth.credentials import AnonymousCredentials

from quotestream.adapters.gcp.bigquery import BigQueryWarehouse
from quotestream.adapters.local.processes import ServiceProcess
from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import QUOTES
from tests.support.local_runs import fresh_warehouse
from tests.support.rows import quote_at
from tests.support.stalling_proxy import StallingProxy

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("timeout_s", [2.0, None])
def test_a_query_that_gets_no_answer_gives_up_after_the_timeout(
    bigquery_emulator: ServiceProcess, timeout_s: float | None
) -> None:
    proxy = StallingProxy(int(bigquery_emulator.address.rsplit(":", 1)[1]))
    marker = f"held-{uuid.uuid4().hex[:8]}"
    warehouse = BigQueryWarehouse(
        "quotestream-test",
        "unused",
        credentials=AnonymousCredentials(),
        api_endpoint=f"http://{proxy.address}",
        query_timeout_s=timeout_s,
    )
    outcome: list[object] = []

    def ask() -> None:
        try:
            outcome.append(warehouse.query(f"SELECT '{marker}' AS marker"))
        except Exception as error:
            outcome.append(error)

    proxy.arm(marker.encode())
    started = time.monotonic()
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(timeout=8)
    took = time.monotonic() - started
    proxy.close()
    assert proxy.held.is_set()
    if timeout_s is None:
        # What the page did before: its reading waited as long as the held request did.
        assert asking.is_alive()
        assert outcome == []
    else:
        assert not asking.is_alive(), "the query waited past its timeout"
        # The client's retry asks again after the timeout, and the proxy lets that one through.
        print(f"answered after {took:.1f} s: {outcome[0]!r:.120}")
        assert took < 8


def test_an_insert_that_gets_no_answer_is_sent_again_after_its_timeout(
    bigquery_emulator: ServiceProcess,
) -> None:
    """A load job once waited for ever on an insert whose connection had silently died."""
    settings, direct = fresh_warehouse("insert-timeout", (QUOTES,))
    proxy = StallingProxy(int(bigquery_emulator.address.rsplit(":", 1)[1]))
    warehouse = BigQueryWarehouse(
        settings.project,
        settings.dataset,
        credentials=AnonymousCredentials(),
        api_endpoint=f"http://{proxy.address}",
        insert_timeout_s=1.0,
    )
    row = quote_at(now_ms())
    outcome: list[object] = []

    def insert() -> None:
        try:
            outcome.append(warehouse.insert_rows(QUOTES.name, [row], [row["event_id"]]))
        except Exception as error:
            outcome.append(error)

    proxy.arm(row["event_id"].encode())
    inserting = threading.Thread(target=insert, daemon=True)
    inserting.start()
    inserting.join(timeout=30)
    proxy.close()
    assert proxy.held.is_set()
    assert not inserting.is_alive(), "the insert waited past its timeout"
    # The client's retry sent it again, and the proxy let that one through.
    assert outcome == [[]]
    stored = direct.query("SELECT event_id FROM {dataset}.quotes")
    assert [stored_row["event_id"] for stored_row in stored] == [row["event_id"]]
