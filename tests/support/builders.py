"""Valid quotes to start from; each test changes one thing."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from quotestream.domain.quote import format_ts, make_event_id

NOW_MS = 1_795_000_000_000  # 2026-11-18T...: tests pass it as the gate's clock


def quote_dict(
    pair: str = "USD-BRL",
    bid: str = "5.3500",
    ask: str = "5.3510",
    event_ts_ms: int = NOW_MS - 1_000,
    source: str = "test",
    **overrides: Any,
) -> dict[str, Any]:
    base, quote_currency = pair.split("-")
    mid, spread = _derived(bid, ask)
    document: dict[str, Any] = {
        "event_id": make_event_id(pair, event_ts_ms, source),
        "pair": pair,
        "base": base,
        "quote_currency": quote_currency,
        "bid": bid,
        "ask": ask,
        "mid": mid,
        "spread": spread,
        "event_ts": format_ts(event_ts_ms),
        "source": source,
    }
    document.update(overrides)
    return document


def _derived(bid: str, ask: str) -> tuple[str, str]:
    try:
        return str((Decimal(bid) + Decimal(ask)) / 2), str(Decimal(ask) - Decimal(bid))
    except InvalidOperation:  # a test about malformed prices: the derived fields do not matter
        return "1", "0"


def quote_bytes(**kwargs: Any) -> bytes:
    return json.dumps(quote_dict(**kwargs)).encode()
