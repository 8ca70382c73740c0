"""Hostile input on POST /v1/quotes: any body gets a 2xx or 4xx with a reason, never a 500,
and every element of an accepted batch is accounted for (accepted or rejected by index)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import API_KEY
from tests.support.builders import NOW_MS, quote_dict

pytestmark = pytest.mark.unit

AUTH = {"X-API-Key": API_KEY, "content-type": "application/json"}
# Any code point, lone surrogates included: JSON's \ud800 escapes decode to them.
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)
elements = st.one_of(
    json_values,
    st.builds(lambda i: quote_dict(event_ts_ms=NOW_MS - 5_000 - i), st.integers(0, 10_000)),
    st.builds(
        lambda key, value: {**quote_dict(), key: value},
        st.sampled_from(["bid", "ask", "pair", "event_ts", "event_id"]),
        json_values,
    ),
    st.builds(lambda key, value: {**quote_dict(), key: value}, any_text, json_values),
)
SLOW = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SLOW
@given(body=st.binary(max_size=3000))
def test_any_bytes_get_a_reasoned_4xx_or_2xx(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/quotes", content=body, headers=AUTH)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["reason"]


@SLOW
@given(batch=st.lists(elements, max_size=30))
def test_every_element_of_a_batch_is_accounted_for(client: TestClient, batch: list[object]) -> None:
    relay = client.app.state.relay
    accepted_before = relay.stats().accepted
    response = client.post("/v1/quotes", content=json.dumps(batch), headers=AUTH)
    assert response.status_code in (202, 503), response.text
    if response.status_code == 202:
        receipt = response.json()
        assert receipt["accepted"] + receipt["rejected"] == len(batch)
        assert all(r["reason"] for r in receipt["rejections"])
    else:
        # A client retries a 5xx whole: nothing of that batch may have been relayed.
        assert relay.stats().accepted == accepted_before
