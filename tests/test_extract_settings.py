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
