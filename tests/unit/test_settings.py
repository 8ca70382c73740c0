from __future__ import annotations

import pytest
from pydantic import ValidationError

from quotestream.settings import Settings

pytestmark = pytest.mark.unit


def test_pairs_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTESTREAM_PAIRS", "usd-brl, BTC-USD")
    assert Settings().pairs == ("USD-BRL", "BTC-USD")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pairs": "USD-BRL,XAU-USD"}, "unknown pairs XAU-USD"),
        ({"api_key": ""}, "at least 16 characters"),
        ({"api_key": "short"}, "at least 16 characters"),
        ({"relay_capacity": 10, "relay_max_batch": 20}, "could never be accepted"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)
