from __future__ import annotations

from fastapi import APIRouter

from quotestream_api.deps import MarketDep
from quotestream_api.schemas import PairOut

router = APIRouter(prefix="/v1/pairs", tags=["pairs"])


@router.get("", response_model=list[PairOut])
def list_pairs(market: MarketDep) -> list[PairOut]:
    return [
        PairOut(
            pair=spec.pair,
            base=spec.base,
            quote_currency=spec.quote_currency,
            scale=spec.scale,
            tick_interval_ms=spec.tick_interval_ms,
        )
        for spec in market.pairs.values()
    ]
