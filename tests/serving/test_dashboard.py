"""The dashboard in headless Chromium (Debian's chromium + chromedriver, driven by selenium)
against the real service: every page renders what the API says, tabs switch, rows are
coloured by age, the page refreshes itself, and screenshots are saved.

``tools/install_browser.sh`` installs the browser (``make test`` runs it). Screenshots go to
``tests/serving/artifacts/`` (git-ignored); ``docs/dashboard.png`` is written when it is
missing or ``TURBOMODE_UPDATE_SCREENSHOTS=1``, so a test run does not rewrite a tracked file.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, need
from tests.serving.builder import ServedMarket
from tests.serving.conftest import ARTIFACTS, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CAPS = ("large", "mid", "small")
WAIT_S = 30.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(CHROMIUM is not None, "chromium is not installed (tools/install_browser.sh)")
    need(CHROMEDRIVER is not None, "chromedriver is not installed (tools/install_browser.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "selenium is not installed (the dev extra)")
        raise
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def renders(driver: Any) -> int:
    return int(driver.find_element("tag name", "body").get_attribute("data-renders") or 0)


def open_view(driver: Any, server: Server, view: str, refresh: int = 300) -> None:
    driver.get("about:blank")  # a fresh page load, not a same-document hash change
    driver.get(f"{server.url}/dashboard?refresh={refresh}#/{view}")
    wait_until(lambda: renders(driver) >= 1, f"the first render of #{view}")


def click_tab(driver: Any, name: str) -> None:
    before = renders(driver)
    driver.find_element("css selector", f'.tabs button[data-tab="{name}"]').click()
    wait_until(lambda: renders(driver) > before, f"the {name} tab to render")
    selected = driver.find_element("css selector", '.tabs button[aria-selected="true"]')
    assert selected.get_attribute("data-tab") == name


def table_rows(driver: Any) -> list[dict[str, str]]:
    rows = driver.find_elements("css selector", "main table tbody tr")
    return [
        {
            "symbol": r.get_attribute("data-symbol"),
            "horizon": r.get_attribute("data-horizon"),
            "side": r.get_attribute("data-side"),
            "bucket": r.get_attribute("data-bucket"),
            "class": r.get_attribute("class"),
            "sector": r.get_attribute("data-sector"),
            "stance": r.get_attribute("data-stance"),
        }
        for r in rows
    ]


def tab_counts(driver: Any) -> dict[str, str]:
    return {
        b.get_attribute("data-tab"): b.text
        for b in driver.find_elements("css selector", ".tabs button")
    }


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_cap_pages_list_the_api_top_20_per_tab_coloured_by_age(
    browser: Any, server: Server
) -> None:
    buckets_seen: set[str] = set()
    best: tuple[int, str, Path] | None = None
    for cap in CAPS:
        open_view(browser, server, f"cap/{cap}")
        for side in ("BUY", "SELL"):
            if side == "SELL":
                click_tab(browser, "SELL")
            api = server.get(f"/signals?cap_class={cap}&side={side}&limit=20").json()
            rows = table_rows(browser)
            assert [(r["symbol"], int(r["horizon"] or 0), r["side"]) for r in rows] == [
                (s["symbol"], s["horizon"], s["side"]) for s in api["signals"]
            ], f"{cap} {side}"
            for row, sig in zip(rows, api["signals"], strict=True):
                assert row["bucket"] == sig["age_bucket"]
                assert f"age-{sig['age_bucket']}" in (row["class"] or "")
            assert tab_counts(browser)[side] == f"{side} ({api['total']})"
            if not rows:
                assert "No active signals" in browser.find_element("id", "view").text
            kinds = {r["bucket"] for r in rows}
            buckets_seen |= kinds
            shot = screenshot(browser, f"{cap}-{side.lower()}")
            if best is None or len(kinds) > best[0]:
                best = (len(kinds), f"{cap}-{side.lower()}", shot)
        click_tab(browser, "BUY")
    assert buckets_seen == {"hot", "warm", "cool", "cold"}, "the fixture spans every age bucket"
    assert best is not None
    docs = REPO / "docs" / "dashboard.png"
    if not docs.exists() or os.environ.get("TURBOMODE_UPDATE_SCREENSHOTS") == "1":
        docs.parent.mkdir(exist_ok=True)
        shutil.copyfile(best[2], docs)


def test_sectors_page_tabs_follow_the_api(browser: Any, server: Server) -> None:
    open_view(browser, server, "sectors")
    sectors = server.get("/sectors").json()["sectors"]
    for stance in ("bullish", "bearish"):
        if stance == "bearish":
            click_tab(browser, "bearish")
        want = sorted(
            (s for s in sectors if s["stance"] == stance),
            key=lambda s: -s["net"] if stance == "bullish" else s["net"],
        )
        got = table_rows(browser)
        assert [(r["sector"], r["stance"]) for r in got] == [(s["sector"], stance) for s in want]
        assert tab_counts(browser)[stance] == f"{stance} ({len(want)})"
        screenshot(browser, f"sectors-{stance}")
    assert any(s["stance"] != "neutral" for s in sectors), (
        "the fixture has a bullish or bearish sector"
    )


def test_overview_counts_match_the_api_and_the_nav_switches_pages(
    browser: Any, server: Server
) -> None:
    open_view(browser, server, "")
    signals = server.get("/signals").json()
    for cap in CAPS:
        card = browser.find_element("css selector", f'.card[data-cap="{cap}"]')
        n_buy = sum(1 for s in signals["signals"] if s["cap_class"] == cap and s["side"] == "BUY")
        n_sell = sum(1 for s in signals["signals"] if s["cap_class"] == cap and s["side"] == "SELL")
        numbers = [e.text for e in card.find_elements("css selector", ".n")]
        assert numbers == [str(n_buy), str(n_sell)], cap
    assert f"Scan of {signals['scan_date']}" in browser.find_element("id", "status").text
    # Lifts are shown as lifts: a quantile night's thresholds are ratios to the class prior.
    limits = signals["thresholds"]
    view = browser.find_element("id", "view").text
    if limits["on"] == "lift":
        assert f"P(BUY) ≥ {limits['buy']:.3f} × its prior" in view
    else:
        assert f"P(BUY) ≥ {limits['buy']:.3f}," in view
    # The platform's state, from the same function as `turbomode status`.
    status = server.get("/status").json()
    shown = {
        row.get_attribute("data-part"): row.get_attribute("data-state")
        for row in browser.find_elements("css selector", "#platform tr[data-part]")
    }
    assert shown == {c["part"]: c["state"] for c in status["checks"]}
    heading = browser.find_element("css selector", "#platform h3").text
    assert heading == (
        "Platform: all well"
        if status["ok"]
        else f"Platform: {len([c for c in status['checks'] if c['state'] != 'ok'])} problem(s)"
    )
    screenshot(browser, "overview")

    before = renders(browser)
    browser.find_element("css selector", 'nav a[data-view="mid"]').click()
    wait_until(lambda: renders(browser) > before, "the mid cap page")
    assert "Mid cap" in browser.find_element("tag name", "h2").text
    active = browser.find_element("css selector", "nav a.active").get_attribute("data-view")
    assert active == "mid"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_page_refreshes_itself(browser: Any, server: Server) -> None:
    open_view(browser, server, "cap/large", refresh=1)
    start = renders(browser)
    wait_until(lambda: renders(browser) >= start + 2, "two automatic refreshes", timeout=15)
    assert "every 1 s" in browser.find_element("id", "status").text


def test_a_signals_page_shows_its_explanation(
    browser: Any, server: Server, market: ServedMarket
) -> None:
    day = market.scan.scan_date
    fresh = [s for s in market.scan.active if s.signal_date == day]
    assert fresh, "the fixture's last scan issues signals"
    s = max(fresh, key=lambda x: x.confidence)
    open_view(browser, server, f"signal/{s.symbol}/{s.horizon}")
    api = server.get(f"/signals/{s.symbol}").json()
    why = next(x for x in api["signals"] if x["horizon"] == s.horizon)["explanation"]
    rows = browser.find_elements("css selector", "#explanation table tbody tr")
    assert [r.get_attribute("data-feature") for r in rows] == [t["feature"] for t in why["top"]]
    for row, t in zip(rows, why["top"], strict=True):
        cells = [c.text for c in row.find_elements("tag name", "td")]
        assert cells[1] == t["description"]
        assert cells[3] == str(round(t["percentile"]))
        assert cells[4] == f"{'+' if t['contribution'] >= 0 else ''}{t['contribution']:.4f}"
    assert f"{s.symbol} {s.side} {s.horizon}d" in browser.find_element("tag name", "h2").text
    shot = screenshot(browser, "signal-explanation")
    docs = REPO / "docs" / "signal-explanation.png"
    if not docs.exists() or os.environ.get("TURBOMODE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, docs)
    # each row of a cap page links to its signal's page
    open_view(browser, server, f"cap/{s.cap_class}")
    links = [
        a.get_attribute("href").split("#", 1)[1]
        for a in browser.find_elements("css selector", "main table tbody td a")
    ]
    assert links and links == [f"/signal/{r['symbol']}/{r['horizon']}" for r in table_rows(browser)]
