"""The "Quotes pipeline" page in a real browser: `airflow standalone` with the plugins folder
as it ships, Debian's chromium driven by Playwright, a login through Airflow's own form, and
every figure on the page checked against the rows put in the BigQuery emulator."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quotestream import bootstrap
from quotestream.domain.quote import now_ms
from quotestream.domain.schemas import DQ_RESULTS, QUOTE_BARS_1M, QUOTES, QUOTES_DEAD_LETTER
from quotestream_dev.local_airflow import USER, LocalAirflow
from tests.conftest import REPO
from tests.support.rows import MINUTE_MS, bar_at, dead_letter_at, quality_row, quote_at

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.slow]

# Debian's chromium (`make browser`), or another Chromium-family browser named by the
# environment (a CI image's Chrome).
CHROMIUM = os.environ.get("QUOTESTREAM_BROWSER", "/usr/bin/chromium")
# Headless, and nothing that reaches for the network this machine does not have.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VOLUME_FAILED = "1800 quotes, 3600 expected from the tick rate"
SCREENSHOT = REPO / ".local" / "reports" / "cockpit.png"


@pytest.fixture
def airflow(job_target: Any, tmp_path: Path) -> Iterator[LocalAirflow]:
    """Airflow standalone on the emulators of a fresh, provisioned project (the environment
    `job_target` sets is what its API server, and so the page, reads)."""
    job_target("cockpit")
    local = LocalAirflow(tmp_path / "airflow", REPO)
    process = local.start(dict(os.environ))
    try:
        yield local
    finally:
        process.stop()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def _fill_the_warehouse(now: int) -> dict[str, Any]:
    """Rows of the last hour whose figures are known: quotes written in three minutes (the
    first of them by another source), one pair an hour silent, dead letters of two reasons, a
    failed volume check, three bars."""
    from quotestream.settings import Settings

    warehouse = bootstrap.build_warehouse(Settings())
    minute = now - now % MINUTE_MS
    # Written 20 and 10 minutes ago, and just now (so USD-BRL is flowing).
    written = {now - 20 * MINUTE_MS: 7, now - 10 * MINUTE_MS: 5, now - 2_000: 3}
    # USD-BRL fails over from `sim` to `test` between the first two: one switch of source.
    sources = {now - 20 * MINUTE_MS: "sim"}
    quotes = [
        quote_at(
            at - 1_000 - index, ingest_ms=at + index, pair="USD-BRL", source=sources.get(at, "test")
        )
        for at, count in written.items()
        for index in range(count)
    ]
    per_minute = Counter(
        (at + index) // MINUTE_MS * MINUTE_MS for at, n in written.items() for index in range(n)
    )
    quotes.append(quote_at(now - 2 * 3_600_000, ingest_ms=now - 2 * 3_600_000, pair="EUR-USD"))
    assert not warehouse.insert_rows(QUOTES.name, quotes)
    dead = [dead_letter_at(now - 60_000 - i, f"m{i}") for i in range(3)]
    dead += [dead_letter_at(now - 30_000 - i, f"n{i}", reason="crossed_market") for i in range(2)]
    assert not warehouse.insert_rows(QUOTES_DEAD_LETTER.name, dead)
    hour = now - now % 3_600_000 - 3_600_000
    quality = [
        quality_row("volume", "USD-BRL", hour, False, "scheduled__test", now, VOLUME_FAILED),
        quality_row("bid_le_ask", None, hour, True, "scheduled__test", now, "0 crossed rows"),
    ]
    assert not warehouse.insert_rows(DQ_RESULTS.name, quality)
    bars = [bar_at(minute - k * MINUTE_MS, 0, "5.355") for k in (3, 2, 1)]
    assert not warehouse.insert_rows(QUOTE_BARS_1M.name, bars)
    warehouse.close()
    return {"rows_last_hour": len(quotes) - 1, "per_minute": sorted(per_minute.items())}


def _one_more_quote_now(expected: dict[str, Any]) -> dict[str, Any]:
    from quotestream.settings import Settings

    now = now_ms()
    warehouse = bootstrap.build_warehouse(Settings())
    assert not warehouse.insert_rows(QUOTES.name, [quote_at(now - 1_000, ingest_ms=now)])
    warehouse.close()
    per_minute = Counter(dict(expected["per_minute"]))
    per_minute[now // MINUTE_MS * MINUTE_MS] += 1
    return {
        "rows_last_hour": expected["rows_last_hour"] + 1,
        "per_minute": sorted(per_minute.items()),
    }


def _time_of_day(ms: int) -> str:
    """As the page shows the moment a source began to serve."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S UTC")


def _log_in(page: Any, airflow: LocalAirflow) -> None:
    """Through Airflow's own login form, as an operator does."""
    from playwright.sync_api import expect

    page.goto(f"{airflow.url}/")
    page.get_by_label(re.compile("username", re.I)).fill(USER)
    page.get_by_label(re.compile("password", re.I)).fill(airflow.password)
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    # The UI routes in the page: poll the address rather than wait for a load event.
    expect(page).not_to_have_url(re.compile("login"), timeout=60_000)


def test_the_page_shows_what_the_warehouse_holds(airflow: LocalAirflow, browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    filled_at = now_ms()
    expected = _fill_the_warehouse(filled_at)

    # Behind Airflow's login: without a session the figures are refused.
    assert page.request.get(f"{airflow.url}/quotestream/api/figures").status == 401

    _log_in(page, airflow)
    # From Airflow's navigation, as an operator finds it: Browse -> Quotes pipeline.
    page.get_by_role("button", name=re.compile("browse", re.I)).click()
    page.get_by_role("menuitem", name="Quotes pipeline").click()
    expect(page).to_have_url(re.compile(r"/plugin/quotes-pipeline\b"), timeout=60_000)
    embedded = page.frame_locator("iframe").locator("body[data-loaded=true]")
    embedded.locator("#rows-last-hour").wait_for(timeout=60_000)
    assert embedded.locator("#rows-last-hour").text_content() == str(expected["rows_last_hour"])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT.with_name("cockpit-in-airflow.png")))
    # A USD-BRL quote of this moment, so the pair is flowing however long the steps above took.
    expected = _one_more_quote_now(expected)
    page.goto(f"{airflow.url}/quotestream/")
    page.wait_for_selector("body[data-loaded=true]", timeout=60_000)
    # The figures are read again at most every 10 s and the page asks every 15 s: it shows
    # the new quote by itself, without a reload.
    page.wait_for_function(
        "document.querySelector('#rows-last-hour').textContent === '16'", timeout=60_000
    )
    figures = page.request.get(f"{airflow.url}/quotestream/api/figures").json()

    assert figures["warehouse_error"] is None
    assert figures["rows_last_hour"] == expected["rows_last_hour"] == 16
    assert page.text_content("#rows-last-hour") == "16"
    shown = [(minute["minute_ms"], minute["rows"]) for minute in figures["throughput"]]
    assert shown == expected["per_minute"]
    assert page.locator("#throughput rect").count() == len(shown)

    jobs = page.locator("#jobs tr")
    assert jobs.count() == 2
    assert "absent" in jobs.nth(0).text_content()

    freshness = {
        row.locator("td").nth(0).text_content(): row.locator("td").all_text_contents()[3:]
        for row in page.locator("#freshness tr").all()
    }
    # USD-BRL on `test` since the earliest quote written 10 minutes ago, once switched.
    since = _time_of_day(filled_at - 10 * MINUTE_MS - 1_004)
    assert freshness["USD-BRL"] == ["flowing", f"test since {since}", "1"]
    since = _time_of_day(filled_at - 2 * 3_600_000)
    assert freshness["EUR-USD"] == ["quiet", f"test since {since}", "0"]
    assert freshness["BTC-USD"] == ["quiet", "\N{EN DASH}", "0"]  # never quoted

    dead = [
        [cell.text_content() for cell in row.locator("td").all()]
        for row in page.locator("#dead-letters tr").all()
    ]
    assert [row[:3] for row in dead] == [
        ["malformed_json", "parse", "3"],
        ["crossed_market", "parse", "2"],
    ]
    assert dead[0][3] == "{not json"

    assert "FAIL: 1800 quotes" in page.text_content("#quality")
    assert "volume USD-BRL" in page.text_content("#open-gaps")
    assert "volume USD-BRL" in page.text_content("#failed-hours")
    assert page.locator("#bars rect").count() == 3
    assert figures["bars_pair"] == "USD-BRL"
    assert len(figures["bars"]) == 3

    page.screenshot(path=str(SCREENSHOT), full_page=True)
