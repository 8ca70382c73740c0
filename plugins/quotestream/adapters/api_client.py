"""The QuoteSource adapter: an HTTP client of the market-data API (Cloud Run or local)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from quotestream.domain.quote import format_ts
from quotestream.ports.sources import SourceUnavailable

_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_DAY_MS = 86_400_000


class HttpQuoteSource:
    """GETs with a timeout, retrying transport errors and 429/5xx with exponential backoff.
    `on_outcome` is told of every attempt ("ok", "retry", "failed") for counters."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 4,
        backoff_s: float = 0.25,
        on_outcome: Callable[[str], None] = lambda _: None,
        auth: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        import requests

        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._on_outcome = on_outcome
        self._auth = auth
        self._session = requests.Session()

    def latest(self, pairs: Sequence[str]) -> list[dict[str, str]]:
        body = self._get("/v1/quotes/latest", {"pairs": ",".join(pairs)})
        quotes: list[dict[str, str]] = body["quotes"]
        return quotes

    def history(self, pair: str, start_ms: int, end_ms: int) -> Iterator[dict[str, str]]:
        """Every quote of [start, end), following the pages, a day at a time (the API serves
        at most 24 hours per query)."""
        for chunk_start in range(start_ms, end_ms, _DAY_MS):
            params: dict[str, Any] = {
                "pair": pair,
                "start": format_ts(chunk_start),
                "end": format_ts(min(chunk_start + _DAY_MS, end_ms)),
                "page_size": 1000,
            }
            while True:
                page = self._get("/v1/quotes", params)
                yield from page["quotes"]
                if not page["next_page_token"]:
                    break
                params["page_token"] = page["next_page_token"]

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        import requests

        last_error = ""
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = self._session.get(
                    self._base_url + path,
                    params=params,
                    timeout=self._timeout_s,
                    headers=self._auth() if self._auth else None,
                )
            except requests.RequestException as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        last_error = f"HTTP 200 with a body that is not JSON: {response.text[:200]}"
                    else:
                        self._on_outcome("ok")
                        return body
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in _RETRYABLE:
                    break
            if attempt < self._attempts - 1:
                self._on_outcome("retry")
        self._on_outcome("failed")
        raise SourceUnavailable(f"GET {path} failed after {self._attempts} attempts: {last_error}")
