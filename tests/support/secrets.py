"""Values every secret setting refuses, each carrying a marker that must never be repeated in an
error (task logs, failure alerts and the page's 503 show errors)."""

from __future__ import annotations

MARKER = "s3cr3t-m4rker"

# Per secret setting of quotestream.settings.Settings: values it refuses. A new secret setting
# fails tests/test_settings.py until it is listed here.
REFUSED_SECRETS: dict[str, list[object]] = {
    "api_key": [
        f"{MARKER}-1",  # too short
        f"a-good-key-of-16-chars,{MARKER}",  # one of several too short
        {"key": f"{MARKER}-in-a-mapping"},  # not a string
    ],
    "oanda_token": [
        MARKER,  # too short
        f"{MARKER}-long-enough but with a space",  # whitespace
        [f"{MARKER}-in-a-list"],  # not a string
    ],
}
