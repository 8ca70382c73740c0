"""The extract reading OANDA's pricing stream (a local stand-in of it) on the local stack: its
quotes go through the load's gate into `quotes` with source `oanda`, each once; its malformed
lines (not JSON, a bad price, the one a dropped connection cut) end in `quotes_dead_letter`
with the gate's reason and the adapter's; the instrument the configuration lacks is in
neither table.

Real parts: the extract and load jobs (DirectRunner processes of the local job runner), the
Pub/Sub and BigQuery emulators; the feed is tests/support/standins/oanda.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.adapters.oanda import Price, read_line
from quotestream.domain import PAIR_CATALOG
from quotestream.ports.jobs import StopMode
from quotestream.services.streaming import JOB_NAMES
from quotestream.settings import Settings
from tests.support.local_runs import wait_until
from tests.support.standins.oanda import OandaStandIn, price_line

pytestmark = pytest.mark.integration

TOKEN = "stand-in-token-0123456789"
ACCOUNT = "101-004-0000000-002"
PAIRS = ("EUR-USD", "USD-JPY")
NOT_JSON = b"<html>502 Bad Gateway</html>"
CUT = b'{"type":"PRICE","instrument":"USD_JPY","time":"2026-12-07T10:0'
EXTRACT, LOAD = JOB_NAMES["extract"], JOB_NAMES["load"]


def bad_price() -> bytes:
    document = json.loads(price_line("EUR_USD", 1))
    document["bids"][0]["price"] = "1.0849x"
    return json.dumps(document).encode()


def test_the_oanda_feed_goes_through_the_gate_into_the_same_tables_with_its_source(
    job_target: Any,
) -> None:
    bad = bad_price()
    scripts = [
        [
            ("heartbeat",),
            ("price", "EUR_USD"),
            ("line", NOT_JSON),
            ("price", "AUD_USD"),
            ("line", bad),
            ("price", "USD_JPY"),
            ("cut", CUT),
        ],
        [],  # then prices and heartbeats
    ]
    with OandaStandIn(TOKEN, ACCOUNT, scripts, price_every_s=0.25) as feed:
        settings: Settings = job_target(
            "oanda",
            QUOTESTREAM_PAIRS=",".join(PAIRS),
            QUOTESTREAM_EXTRACT_SOURCE="oanda",
            QUOTESTREAM_OANDA_BACKOFF_INITIAL_S="0.2",
            **feed.env(),
        )
        runner = bootstrap.build_job_runner(settings)
        warehouse = bootstrap.build_warehouse(settings)

        def dead_letters() -> list[dict[str, Any]]:
            return warehouse.query(
                "SELECT payload, reason, attributes FROM {dataset}.quotes_dead_letter"
            )

        def stored_ids() -> set[str]:
            rows = warehouse.query("SELECT event_id FROM {dataset}.quotes")
            return {row["event_id"] for row in rows}

        try:
            runner.launch(LOAD, "load", [])
            runner.launch(EXTRACT, "extract", [])
            wait_until(lambda: len(feed.requests) >= 2, 90, "the stream to be reopened")
            wait_until(lambda: len(dead_letters()) >= 3, 90, "the malformed lines' dead letters")
            # Every price the feed had sent by now, of a configured instrument, is stored.
            sent = list(feed.sent)
            pairs = {pair: PAIR_CATALOG[pair] for pair in PAIRS}
            expected = {
                p.quote["event_id"]: p.quote
                for line in sent
                if isinstance(p := read_line(line, pairs), Price)
            }
            good = {i for i, q in expected.items() if q["mid"]}  # the bad price's mid is ""
            wait_until(lambda: good <= stored_ids(), 90, "the stream's quotes to be stored")
        finally:
            runner.stop(EXTRACT, StopMode.CANCEL)
            runner.stop(LOAD, StopMode.CANCEL)

    quotes = warehouse.query("SELECT event_id, pair, source FROM {dataset}.quotes")
    assert len(quotes) == len({q["event_id"] for q in quotes}), "a quote stored twice"
    assert {q["source"] for q in quotes} == {"oanda"}
    assert {q["pair"] for q in quotes} == set(PAIRS)
    assert {q["event_id"] for q in quotes} >= good

    letters = {}
    for row in dead_letters():
        attributes = {a["key"]: a["value"] for a in row["attributes"]}
        letters[(row["reason"], attributes.get("source_reason"))] = (row["payload"], attributes)
    assert set(letters) == {
        ("malformed_json", "not_json"),
        ("malformed_json", "cut_line"),
        # A quote in the gate's form with the price as received: the gate's reason says it.
        ("bad_price", None),
    }, letters
    assert letters[("malformed_json", "not_json")][0].encode() == NOT_JSON
    assert letters[("malformed_json", "cut_line")][0].encode() == CUT
    assert letters[("malformed_json", "cut_line")][1]["source"] == "oanda"
    refused = json.loads(letters[("bad_price", None)][0])
    assert (refused["bid"], refused["source"], refused["pair"]) == ("1.0849x", "oanda", "EUR-USD")
    # The instrument the configuration lacks: in neither table.
    assert not any("AUD" in row["payload"] for row in dead_letters())
    print(
        f"\n{len(quotes)} quotes stored from the stream, {len(letters)} dead letters "
        f"{sorted(letters, key=str)}; {len(feed.requests)} connections"
    )
