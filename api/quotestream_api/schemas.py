"""Response models: they document the API in OpenAPI; quotes travel as `Quote.to_dict()`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QuoteOut(BaseModel):
    event_id: str
    pair: str = Field(examples=["USD-BRL"])
    base: str
    quote_currency: str
    bid: str = Field(description="Decimal string at the pair's scale", examples=["5.3705"])
    ask: str
    mid: str
    spread: str
    event_ts: str = Field(
        description="RFC 3339 UTC, milliseconds", examples=["2026-11-24T01:37:51.170Z"]
    )
    source: str


class PairOut(BaseModel):
    pair: str
    base: str
    quote_currency: str
    scale: int
    tick_interval_ms: int


class LatestQuotes(BaseModel):
    quotes: list[QuoteOut]


class QuoteHistoryPage(BaseModel):
    pair: str
    start: str
    end: str
    quotes: list[QuoteOut]
    next_page_token: str | None = Field(
        description="Pass back as page_token; null on the last page"
    )


class Rejection(BaseModel):
    index: int
    reason: str
    detail: str


class RelayReceipt(BaseModel):
    accepted: int
    rejected: int
    rejections: list[Rejection]


class Health(BaseModel):
    status: str
