from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from quotestream.domain.market import MarketSimulator
from quotestream.domain.pairs import PairSpec, split_pairs
from quotestream.domain.quote import Quote, format_ts, to_ms
from quotestream.domain.validation import InvalidQuote, Reason, loads_json, quote_from_mapping
from quotestream.services.relay import RelayClosed
from quotestream_api.deps import (
    MarketDep,
    NowDep,
    RelayDep,
    SettingsDep,
    limit_push_rate,
    require_api_key,
)
from quotestream_api.problems import Problem
from quotestream_api.schemas import LatestQuotes, QuoteHistoryPage, RelayReceipt

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])

MAX_HISTORY_RANGE = timedelta(hours=24)
MAX_PAGE_SIZE = 1000
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)
_MAX_TOKEN_CHARS = 200


@router.get(
    "/latest", response_model=LatestQuotes, responses={422: {"description": "unknown pair"}}
)
def latest_quotes(
    market: MarketDep,
    now: NowDep,
    pairs: Annotated[
        str | None, Query(description="Comma-separated pairs; all pairs when omitted")
    ] = None,
) -> dict[str, Any]:
    wanted = split_pairs(pairs) if pairs else tuple(market.pairs)
    specs = [_spec(market, pair) for pair in wanted]
    return {"quotes": [market.latest(spec, now).to_dict() for spec in specs]}


@router.get(
    "",
    response_model=QuoteHistoryPage,
    responses={422: {"description": "unknown pair, bad range or page_token, invalid parameter"}},
)
def quote_history(
    market: MarketDep,
    now: NowDep,
    pair: Annotated[str, Query(examples=["USD-BRL"])],
    start: Annotated[datetime, Query(description="Inclusive, RFC 3339 with offset")],
    end: Annotated[datetime, Query(description="Exclusive, RFC 3339 with offset")],
    page_token: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 500,
) -> dict[str, Any]:
    spec = _spec(market, pair.upper())
    if start.tzinfo is None or end.tzinfo is None:
        raise Problem(
            422,
            "start and end need a UTC offset, e.g. 2026-01-31T12:00:00Z",
            reason="naive_timestamp",
        )
    if end <= start:
        raise Problem(422, "end must be after start", reason="bad_range")
    if not (start >= _EARLIEST and end <= _LATEST):
        raise Problem(
            422,
            f"start and end must lie within [{_EARLIEST:%Y-%m-%d}, {_LATEST:%Y-%m-%d}]",
            reason="bad_range",
        )
    if end - start > MAX_HISTORY_RANGE:
        raise Problem(
            422,
            f"the range may span at most {MAX_HISTORY_RANGE}; page through smaller ranges",
            reason="range_too_large",
        )
    start_ms, end_ms = to_ms(start), to_ms(end)
    fingerprint = _fingerprint(spec.pair, start_ms, end_ms)
    from_tick = _decode_page_token(page_token, fingerprint) if page_token else None
    # Quotes past now do not exist yet; the interval is served up to now.
    ticks = market.quotes_between(spec, start_ms, min(end_ms, now + 1), from_tick)
    page: list[Quote] = []
    next_token = None
    for tick, quote in ticks:
        if len(page) == page_size:
            next_token = _encode_page_token(tick, fingerprint)
            break
        page.append(quote)
    return {
        "pair": spec.pair,
        "start": format_ts(start_ms),
        "end": format_ts(end_ms),
        "quotes": [quote.to_dict() for quote in page],
        "next_page_token": next_token,
    }


@router.post(
    "",
    status_code=202,
    response_model=RelayReceipt,
    # In this order: the rate limit also counts requests with a wrong key.
    dependencies=[Depends(limit_push_rate), Depends(require_api_key)],
    responses={
        400: {"description": "the body is not a UTF-8 JSON array"},
        401: {"description": "missing or wrong X-API-Key"},
        413: {"description": "body or batch too large"},
        429: {"description": "over the client's rate limit; retry after Retry-After seconds"},
        503: {"description": "relay full or unavailable; retry after Retry-After seconds"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "Quotes exactly as GET serves them. Each element is judged alone: "
            "one that is not a valid quote is rejected by index in the 202 answer.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {
                            "description": "a quote; anything else is rejected by index",
                            "anyOf": [{"$ref": "#/components/schemas/QuoteOut"}, {}],
                        },
                    }
                }
            },
        }
    },
)
async def push_quotes(
    request: Request, settings: SettingsDep, market: MarketDep, relay: RelayDep, now: NowDep
) -> dict[str, Any]:
    """Accept a JSON array of quotes (each exactly as GET serves it) and relay the valid ones
    to Pub/Sub. Invalid quotes are reported by index with a reason; none are published."""
    body = await _read_limited(request, settings.relay_max_body_bytes)
    try:
        batch = loads_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8", reason=Reason.BAD_ENCODING) from None
    except InvalidQuote as error:
        raise Problem(400, f"the body is not JSON: {error.detail}", reason=error.reason) from None
    if not isinstance(batch, list):
        raise Problem(400, "the body must be a JSON array of quotes", reason="not_an_array")
    if len(batch) > settings.relay_max_batch:
        raise Problem(
            413,
            f"{len(batch)} quotes in one batch; at most {settings.relay_max_batch}",
            reason="batch_too_large",
        )
    accepted: list[Quote] = []
    rejections: list[dict[str, Any]] = []
    for index, item in enumerate(batch):
        try:
            accepted.append(quote_from_mapping(item, pairs=market.pairs, now_ms=now))
        except InvalidQuote as error:
            detail = _encodable(error.detail)
            rejections.append({"index": index, "reason": error.reason, "detail": detail})
    try:
        queued = relay.offer(accepted)
    except RelayClosed:
        raise Problem(
            503, "shutting down", reason="shutting_down", headers={"Retry-After": "1"}
        ) from None
    if not queued:
        raise Problem(
            503,
            f"the relay queue is full ({relay.capacity} quotes); retry the whole batch",
            reason="queue_full",
            headers={"Retry-After": "1"},
        )
    return {"accepted": len(accepted), "rejected": len(rejections), "rejections": rejections}


def _encodable(text: str) -> str:
    """`text` with lone surrogates (JSON escapes such as \\ud800 decode to them) written as
    escapes, so the receipt of a batch whose quotes are already queued always serialises."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"body of {declared} bytes; at most {limit}", reason="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"body over {limit} bytes", reason="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _spec(market: MarketSimulator, pair: str) -> PairSpec:
    spec = market.pairs.get(pair)
    if spec is None:
        raise Problem(
            422,
            f"unknown pair {pair[:32]!r}; known: {', '.join(market.pairs)}",
            reason="unknown_pair",
        )
    return spec


def _fingerprint(pair: str, start_ms: int, end_ms: int) -> str:
    return hashlib.blake2b(f"{pair}|{start_ms}|{end_ms}".encode(), digest_size=6).hexdigest()


def _encode_page_token(tick: int, fingerprint: str) -> str:
    raw = json.dumps({"t": tick, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page_token(token: str, fingerprint: str) -> int:
    if len(token) > _MAX_TOKEN_CHARS:
        raise Problem(422, "page_token is not one this API issued", reason="bad_page_token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
        tick, query = decoded["t"], decoded["q"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise Problem(
            422, "page_token is not one this API issued", reason="bad_page_token"
        ) from None
    if query != fingerprint or not isinstance(tick, int):
        raise Problem(
            422,
            "page_token belongs to another query (pair, start and end must not change)",
            reason="bad_page_token",
        )
    return tick
