"""The extract's look-back must fit the live load's freshness horizon."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from quotestream.settings import LOOKBACK_SPARE_S, Settings

pytestmark = pytest.mark.unit


def test_the_defaults_fit() -> None:
    settings = Settings()
    reach = settings.extract_max_lookback_s + settings.extract_resume_overlap_s
    assert reach + LOOKBACK_SPARE_S <= settings.max_quote_age_s


def test_a_look_back_beyond_the_horizon_is_refused_with_what_would_fit() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(max_quote_age_s=3600)
    message = str(refused.value)
    assert "extract_max_lookback_s (3600)" in message
    assert "too_old" in message
    assert "at most 2940" in message
    assert (
        Settings(max_quote_age_s=3600, extract_max_lookback_s=2940).extract_max_lookback_s == 2940
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extract_source": "oanda"}, "needs QUOTESTREAM_OANDA_ACCOUNT_ID and"),
        ({"extract_source": "oanda", "oanda_account_id": "101-1"}, "QUOTESTREAM_OANDA_TOKEN"),
        ({"oanda_stream_url": "http://stream.example.com"}, "plain http only to a loopback"),
        ({"oanda_backoff_initial_s": 5, "oanda_backoff_max_s": 1}, "below oanda_backoff_initial"),
        ({"extract_source": "polygon"}, "'api' or 'oanda'"),
    ],
)
def test_the_oanda_source_is_refused_without_what_it_needs(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_the_extract_alone_gets_the_oanda_stream_and_nothing_connects_before_it_is_read() -> None:
    from quotestream import bootstrap
    from quotestream.adapters.api_client import HttpQuoteSource
    from quotestream.adapters.oanda import SharedOandaStream

    settings = Settings(
        extract_source="oanda",
        oanda_account_id="101-004-1",
        oanda_token="0123456789abcdef-token",
        oanda_stream_url="http://127.0.0.1:9",
        pairs=("EUR-USD",),
    )
    first = bootstrap.build_quote_source(settings, live=True)
    second = bootstrap.build_quote_source(settings, live=True)
    try:
        assert isinstance(first, SharedOandaStream)
        assert isinstance(second, SharedOandaStream)
        # One stream per process for the same feed, and no connection thread yet.
        assert first._stream is second._stream
        assert first._stream._thread is None
        # The backfill and the reconciliation read the API's history.
        assert isinstance(bootstrap.build_quote_source(settings), HttpQuoteSource)
    finally:
        first.close()
        second.close()
