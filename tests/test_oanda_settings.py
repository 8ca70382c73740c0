"""What an extract reading OANDA is allowed: the local target only (its token would have to
reach Dataflow's workers from Secret Manager, not built), no resume point to wait for, and no
secret in a job's graph but the one it uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from quotestream import bootstrap
from quotestream.beam.run import for_pipeline
from quotestream.settings import Settings

pytestmark = pytest.mark.unit

TOKEN = "0123456789abcdef-token"
RELAY_KEY = "relay-key-0123456789"
OANDA = {
    "extract_source": "oanda",
    "oanda_account_id": "101-004-1",
    "oanda_token": TOKEN,
    "oanda_stream_url": "http://127.0.0.1:9",
}


def test_oanda_on_google_cloud_is_refused_up_front_saying_why() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(target="gcp", project="p", **OANDA)
    message = str(refused.value)
    assert "local target only" in message
    assert "Secret Manager" in message
    assert TOKEN not in message


def test_a_stream_source_resumes_from_no_stored_quotes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9")
    assert bootstrap.resume_points_factory(Settings(**OANDA)) is None
    assert bootstrap.resume_points_factory(Settings()) is not None


@pytest.mark.parametrize(
    ("kind", "values", "kept"),
    [
        ("extract", OANDA, TOKEN),  # the stream's token: what it reads with
        ("load", OANDA, None),
        ("extract", {}, None),
    ],
)
def test_a_pipeline_carries_no_secret_but_the_one_it_uses(
    kind: str, values: dict[str, str], kept: str | None
) -> None:
    settings = Settings(api_key=RELAY_KEY, **values)
    carried = for_pipeline(kind, settings)
    assert Settings.secret_fields() == {"api_key", "oanda_token"}
    assert carried.api_key is None
    token = carried.oanda_token.get_secret_value() if carried.oanda_token else None
    assert token == kept
    assert carried.pairs == settings.pairs


FALLBACK = {**OANDA, "extract_source": "api", "extract_fallback_source": "oanda"}


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ({**FALLBACK, "target": "gcp", "project": "p"}, "local target only"),
        ({**FALLBACK, "oanda_token": None}, "needs QUOTESTREAM_OANDA_ACCOUNT_ID"),
        ({"extract_fallback_source": "api"}, "a fallback is another source"),
        ({**FALLBACK, "extract_failover_after_s": 3600}, "must be under extract_max_lookback_s"),
    ],
)
def test_a_fallback_is_refused_where_its_source_would_be(
    values: dict[str, object], refusal: str
) -> None:
    with pytest.raises(ValidationError, match=refusal):
        Settings(**values)


def test_an_extract_with_a_stream_fallback_carries_its_token_and_the_load_none() -> None:
    settings = Settings(**FALLBACK)
    assert for_pipeline("extract", settings).oanda_token is not None
    assert for_pipeline("load", settings).oanda_token is None
