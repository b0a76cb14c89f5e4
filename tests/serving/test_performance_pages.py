"""The performance pages against the real service on a market with a track record
(tests/serving/performance_market.py: two months of nightly scans, two paper wallets run by
``turbomode wallet run``, outcomes tracked by ``turbomode outcomes track``).

Each figure is checked twice: the API's against a computation of its own here from the
store's rows (so a wrong join or grouping in turbomode.reports.performance fails), and the
page's against the API in headless Chromium (no console error on any page). The what-if
filters are driven in the browser and the count they leave must be the store's.
Screenshots go to tests/serving/artifacts/; docs/performance-*.png are written when missing
or with TURBOMODE_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.serving.builder import ServedMarket
from tests.serving.conftest import Server, server_env, start_server, stop_server
from tests.serving.performance_market import build_performance_market
from tests.serving.test_dashboard import (
    browser,  # noqa: F401 - the module's Chromium fixture, shared
    open_view,
    renders,
    screenshot,
    wait_until,
)
from turbomode.store import SignalStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def perf_market(tmp_path_factory: pytest.TempPathFactory) -> ServedMarket:
    return build_performance_market(tmp_path_factory.mktemp("performance"))


@pytest.fixture(scope="module")
def perf_server(
    perf_market: ServedMarket, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("performance-server")
    running = start_server(server_env(perf_market, workdir / "bentoml"), workdir)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def rows(perf_market: ServedMarket) -> dict[str, Any]:
    """The store's rows the pages are made of, read once."""
    store = SignalStore(perf_market.settings.stores.signals_url)
    try:
        return {
            "wallets": {w.name: w for w in store.wallets()},
            "equity": {w.name: store.wallet_equity(w.name) for w in store.wallets()},
            "trades": {
                w.name: store.wallet_positions(w.name, status="closed") for w in store.wallets()
            },
            "history": store.signal_history(),
            "outcomes": store.outcomes(),
            "clean_dir": perf_market.settings.data.clean_dir,
        }
    finally:
        store.dispose()


def _docs_copy(shot: Path, name: str) -> None:
    docs = REPO / "docs" / name
    if not docs.exists() or os.environ.get("TURBOMODE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, docs)


def _no_console_errors(driver: Any) -> None:
    """No console error, and no absent value written out as JavaScript's null/undefined/NaN."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    words = set(driver.find_element("id", "view").text.split())
    assert not words & {"null", "undefined", "NaN"}, words & {"null", "undefined", "NaN"}


def _tall_screenshot(driver: Any, name: str) -> Path:
    """The whole page: the window grown to the document's height for the shot."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 1000), 2600))
    try:
        return screenshot(driver, name)
    finally:
        driver.set_window_size(1400, 1000)


# ---- the API against the store --------------------------------------------------------------


def test_equity_api_is_the_wallets_marks_beside_spy(
    perf_server: Server, rows: dict[str, Any]
) -> None:
    for name, wallet in rows["wallets"].items():
        api = perf_server.get(f"/performance/equity?wallet={name}").json()
        marks = rows["equity"][name]
        assert len(marks) > 20, "the fixture's wallets ran every day"
        equity = marks["equity"].to_numpy(dtype=float)
        assert [p["date"] for p in api["points"]] == [str(d.date()) for d in marks["date"]]
        assert [p["equity"] for p in api["points"]] == pytest.approx(list(equity))
        peak = np.maximum.accumulate(np.concatenate([[wallet.initial_cash], equity]))[1:]
        assert [p["drawdown"] for p in api["points"]] == pytest.approx(list(equity / peak - 1))
        assert api["metrics"]["total_return"] == pytest.approx(equity[-1] / wallet.initial_cash - 1)
        assert api["metrics"]["max_drawdown"] == pytest.approx(float((equity / peak - 1).min()))

        # SPY held: the same shares all along, so its equity moves by shares × SPY's close move.
        spy = spy_closes(rows, api)
        bench = np.array([p["benchmark"] for p in api["points"]], dtype=float)
        shares = (bench[1:] - bench[0]) / (spy[1:] - spy[0])
        assert np.allclose(shares, shares[0], rtol=1e-9)
        assert 0 < shares[0] * spy[0] <= wallet.initial_cash * 1.01

        # P&L by month: each month's last mark less the previous month's (first: initial cash).
        months = marks.assign(month=marks["date"].dt.strftime("%Y-%m")).groupby("month")
        last = months["equity"].last()
        base = [wallet.initial_cash, *last.to_numpy()[:-1]]
        assert [(m["month"], m["pnl"]) for m in api["months"]] == [
            (k, pytest.approx(v - b)) for (k, v), b in zip(last.items(), base, strict=True)
        ]
        assert len(api["months"]) >= 2

        assert api["equity_svg"].count("<polyline") == 2  # the wallet and SPY
        points = api["equity_svg"].split('points="')[1].split('"')[0].split()
        assert len(points) == len(marks)

    r = perf_server.get("/performance/equity?wallet=nope")
    assert r.status_code == 404 and "unknown wallet 'nope'; one of: paper, smart" in r.text


def spy_closes(rows: dict[str, Any], api: dict[str, Any]) -> np.ndarray:
    """SPY's adjusted close on the wallet's days, read from the clean store here."""
    market = pd.read_parquet(rows["clean_dir"] / "market.parquet")
    spy = market[market["symbol"] == "SPY"].set_index("date")
    days = pd.to_datetime([p["date"] for p in api["points"]])
    close = spy["adj_close"] if "adj_close" in spy else spy["close"]
    return close.reindex(days).to_numpy(dtype=float)


def test_hit_rate_api_groups_the_resolved_outcomes(
    perf_server: Server, rows: dict[str, Any]
) -> None:
    api = perf_server.get("/performance/hit_rates").json()
    outcomes = rows["outcomes"]
    done = outcomes[outcomes["status"] == "resolved"]
    assert len(done) > 100 and api["resolved"] == len(done)
    assert api["pending"] == int((outcomes["status"] == "pending").sum())
    assert api["overall"]["hit_rate"] == pytest.approx(done["correct"].astype(float).mean())
    keys = {
        "horizon": done["horizon"].astype(int),
        "sector": done["sector"],
        "month": done["signal_date"].dt.strftime("%Y-%m"),
    }
    for group, key in keys.items():
        want = []
        for value in sorted(key.unique()):
            part = done[key == value]
            want.append(
                {
                    group: value if group != "horizon" else int(value),
                    "n": len(part),
                    "hits": int(part["correct"].astype(bool).sum()),
                    "hit_rate": pytest.approx(part["correct"].astype(float).mean()),
                    "mean_return": pytest.approx(part["side_return"].astype(float).mean()),
                }
            )
        assert api[group] == want, group
    assert [r["horizon"] for r in api["horizon"]] == [1, 2, 5]


def _by_hand(rows: dict[str, Any], wallet: str, **filters: Any) -> pd.DataFrame:
    """The wallet's closed trades through the filters, computed here: the confidence is the
    highest of the calls made on the trade's signal date for its symbol."""
    trades = rows["trades"][wallet]
    history = rows["history"]
    calls = history[history["scan_date"] == history["signal_date"]]
    conf = {
        (s, d): c
        for (s, d), c in calls.groupby(["symbol", "signal_date"])["confidence"].max().items()
    }
    keep = []
    for t in trades.to_dict("records"):
        c = conf.get((t["symbol"], t["signal_date"]))
        if "min_confidence" in filters and (c is None or c < filters["min_confidence"]):
            continue
        if any(t[k] != v for k, v in filters.items() if k != "min_confidence"):
            continue
        keep.append(t)
    return pd.DataFrame(keep, columns=trades.columns)


WHAT_IFS: list[tuple[str, dict[str, Any]]] = [
    ("paper", {}),
    ("paper", {"min_confidence": 0.32}),
    ("paper", {"sector": "Financials"}),
    ("paper", {"sector": "Energy", "min_confidence": 0.3}),
    ("smart", {}),
    ("smart", {"tier": "Average", "regime": "CHOPPY"}),
    ("smart", {"regime": "BULL"}),
    ("smart", {"tier": "Elite"}),
    ("smart", {"sector": "Industrials", "min_confidence": 0.31}),
]


@pytest.mark.parametrize(("wallet", "filters"), WHAT_IFS)
def test_trade_filters_leave_what_the_store_says(
    perf_server: Server, rows: dict[str, Any], wallet: str, filters: dict[str, Any]
) -> None:
    query = "&".join(f"{k}={v}" for k, v in {"wallet": wallet, **filters}.items())
    api = perf_server.get(f"/performance/trades?{query}").json()
    want = _by_hand(rows, wallet, **filters)
    assert api["total"] == len(rows["trades"][wallet]) > 50
    assert api["n"] == len(want)
    assert sorted(t["trade_id"] for t in api["trades"]) == sorted(want["trade_id"])
    if len(want):
        assert api["hit_rate"] == pytest.approx(float((want["net_pnl"] > 0).mean()))
        assert api["mean_return"] == pytest.approx(float(want["net_return"].mean()))
    else:
        assert api["hit_rate"] is None and api["mean_return"] is None


def test_the_filters_narrow_and_the_smart_wallet_has_tiers_and_regimes(
    perf_server: Server,
) -> None:
    every = perf_server.get("/performance/trades?wallet=smart").json()
    assert every["present"]["tier"] and every["present"]["regime"]
    sector = perf_server.get("/performance/trades?wallet=smart&sector=Industrials").json()
    assert 0 < sector["n"] < every["n"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("min_confidence=abc", "min_confidence must be a number from 0 to 1, not 'abc'"),
        ("min_confidence=1.5", "min_confidence must be a number from 0 to 1, not '1.5'"),
        ("min_confidence=nan", "min_confidence must be a number from 0 to 1"),
        ("sector=Nope", "unknown sector 'Nope'; one of: Communication Services"),
        ("tier=Gold", "unknown tier 'Gold'; one of: Elite, Strong, Average, Weak, Avoid"),
        ("regime=calm", "unknown regime 'calm'; one of: BULL, BEAR, CHOPPY, VOLATILE"),
        ("wallet=nope", "unknown wallet 'nope'"),
    ],
)
def test_bad_filters_get_a_one_line_4xx(perf_server: Server, query: str, message: str) -> None:
    r = perf_server.get(f"/performance/trades?{query}")
    assert r.status_code == (404 if query.startswith("wallet") else 400), r.text
    body = r.json()
    assert message in body["error"] and "\n" not in body["error"]


def test_top_signals_by_confidence(perf_server: Server, rows: dict[str, Any]) -> None:
    api = perf_server.get("/signals?order=confidence&limit=10").json()
    history = rows["history"]
    latest = history[history["scan_date"] == history["scan_date"].max()]
    assert str(latest["scan_date"].iloc[0].date()) == api["scan_date"]
    top = latest.sort_values(["confidence", "symbol", "horizon"], ascending=[False, True, True])
    top = top.head(10)
    assert [(s["symbol"], s["horizon"]) for s in api["signals"]] == list(
        zip(top["symbol"], top["horizon"], strict=True)
    )
    scan_day = pd.Timestamp(api["scan_date"])
    for got, (_, s) in zip(api["signals"], top.iterrows(), strict=True):
        assert got["confidence"] == pytest.approx(s["confidence"])
        assert got["age_days"] == (scan_day - pd.Timestamp(s["signal_date"])).days
    assert api["total"] == len(latest)


# ---- the pages against the API, in Chromium -------------------------------------------------


def test_equity_page_shows_the_api_figures(browser: Any, perf_server: Server) -> None:  # noqa: F811
    api = perf_server.get("/performance/equity").json()
    open_view(browser, perf_server, "equity")
    assert api["wallet"] == "paper"
    cells = {
        r.get_attribute("data-metric"): [c.text for c in r.find_elements("tag name", "td")]
        for r in browser.find_elements("css selector", "table.metrics tbody tr")
    }
    m, b = api["metrics"], api["benchmark_metrics"]
    for key in ("total_return", "max_drawdown", "cagr"):
        shown = [_percent(c) for c in cells[key][1:]]
        assert shown == [pytest.approx(x[key] * 100, abs=0.005 + 1e-9) for x in (m, b)], key
    assert float(cells["final_equity"][1].replace(",", "")) == pytest.approx(
        m["final_equity"], abs=0.005 + 1e-9
    )
    months = browser.find_elements("css selector", "table.months tbody tr")
    assert [r.get_attribute("data-month") for r in months] == [x["month"] for x in api["months"]]
    for row, x in zip(months, api["months"], strict=True):
        pnl = row.find_elements("tag name", "td")[1].text
        assert pnl[0] == ("+" if x["pnl"] >= 0 else "-")
        assert float(pnl.replace(",", "")) == pytest.approx(x["pnl"], abs=0.005 + 1e-9)
    lines = browser.find_elements("css selector", '[data-chart="equity"] polyline')
    assert [p.get_attribute("data-series") for p in lines] == ["wallet", "SPY buy & hold"]
    drawn = browser.find_elements("css selector", '[data-chart="drawdown"] polyline')
    assert len(drawn) == 2 and drawn[0].size["width"] > 300  # rendered, not just present
    _no_console_errors(browser)
    _docs_copy(_tall_screenshot(browser, "performance-equity"), "performance-equity.png")

    before = renders(browser)
    browser.find_element("css selector", '.tabs button[data-tab="smart"]').click()
    wait_until(lambda: renders(browser) > before, "the smart wallet's equity")
    assert "Paper wallet smart" in browser.find_element("tag name", "h2").text


def test_hit_rate_page_shows_the_api_figures(browser: Any, perf_server: Server) -> None:  # noqa: F811
    api = perf_server.get("/performance/hit_rates").json()
    open_view(browser, perf_server, "hits")
    for group in ("horizon", "sector", "month"):
        trs = browser.find_elements("css selector", f'section[data-group="{group}"] tbody tr')
        assert [r.get_attribute("data-key") for r in trs] == [str(x[group]) for x in api[group]]
        for tr, x in zip(trs, api[group], strict=True):
            cells = [c.text for c in tr.find_elements("tag name", "td")]
            assert cells[1:3] == [str(x["n"]), str(x["hits"])]
            assert _percent(cells[3]) == pytest.approx(x["hit_rate"] * 100, abs=0.05 + 1e-9)
    overall = browser.find_element("id", "hits-overall").text
    assert f"{api['overall']['n']} resolved outcomes, {api['overall']['hits']} right" in overall
    _no_console_errors(browser)
    _docs_copy(_tall_screenshot(browser, "performance-hit-rate"), "performance-hit-rate.png")


def _percent(text: str) -> float:
    """'56.3 %' → 56.3 (JavaScript rounds a half up where Python's format rounds to even)."""
    assert text.endswith(" %"), text
    return float(text[:-2])


def _what_if(driver: Any) -> tuple[int, int, str]:
    p = driver.find_element("id", "what-if")
    return int(p.get_attribute("data-n")), int(p.get_attribute("data-total")), p.text


def _pick(driver: Any, name: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    before = renders(driver)
    Select(driver.find_element("id", f"f-{name}")).select_by_value(value)
    wait_until(lambda: renders(driver) > before, f"the page after {name}={value}")


def _type_confidence(driver: Any, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    before = renders(driver)
    box = driver.find_element("id", "f-min_confidence")
    box.clear()
    box.send_keys(value, Keys.TAB)  # the change event: the value committed
    wait_until(lambda: renders(driver) > before, f"the page after min confidence {value}")


def test_trade_page_what_if_filters_change_the_count_as_the_store_says(
    browser: Any,  # noqa: F811
    perf_server: Server,
    rows: dict[str, Any],
) -> None:
    open_view(browser, perf_server, "trades")
    total = len(rows["trades"]["paper"])
    assert _what_if(browser)[:2] == (total, total)

    _pick(browser, "sector", "Financials")
    want = _by_hand(rows, "paper", sector="Financials")
    n, _, text = _what_if(browser)
    assert n == len(want) and f"{n} of {total} trades remain" in text
    shown = text.split("hit rate ")[1].split(" (")[0]
    assert _percent(shown) == pytest.approx(float((want["net_pnl"] > 0).mean()) * 100, abs=0.05)
    assert len(browser.find_elements("css selector", "table.trades tbody tr")) == n

    _type_confidence(browser, "0.3")
    want = _by_hand(rows, "paper", sector="Financials", min_confidence=0.3)
    assert _what_if(browser)[0] == len(want)
    api = perf_server.get("/performance/trades?sector=Financials&min_confidence=0.3").json()
    shown = _what_if(browser)[2].split("mean return ")[1].split(" ·")[0]
    assert _percent(shown) == pytest.approx(api["mean_return"] * 100, abs=0.005 + 1e-9)

    _pick(browser, "sector", "")
    _type_confidence(browser, "")
    assert _what_if(browser)[0] == total

    before = renders(browser)
    browser.find_element("css selector", '.tabs button[data-tab="smart"]').click()
    wait_until(lambda: renders(browser) > before, "the smart wallet's trades")
    smart = len(rows["trades"]["smart"])
    assert _what_if(browser)[:2] == (smart, smart)
    _pick(browser, "regime", "CHOPPY")
    assert _what_if(browser)[0] == len(_by_hand(rows, "smart", regime="CHOPPY"))
    _pick(browser, "tier", "Elite")
    assert _what_if(browser)[0] == 0 == len(_by_hand(rows, "smart", regime="CHOPPY", tier="Elite"))
    assert "No closed trade passes these filters." in browser.find_element("id", "view").text
    _pick(browser, "tier", "Average")
    _pick(browser, "sector", "Industrials")
    want = _by_hand(rows, "smart", regime="CHOPPY", tier="Average", sector="Industrials")
    assert _what_if(browser)[0] == len(want) > 0
    _no_console_errors(browser)
    _docs_copy(_tall_screenshot(browser, "performance-trades"), "performance-trades.png")


def test_top_page_lists_the_ten_most_confident_with_their_age(
    browser: Any,  # noqa: F811
    perf_server: Server,
) -> None:
    api = perf_server.get("/signals?order=confidence&limit=10").json()
    open_view(browser, perf_server, "top")
    trs = browser.find_elements("css selector", "main table tbody tr")
    assert [(r.get_attribute("data-symbol"), r.get_attribute("data-horizon")) for r in trs] == [
        (s["symbol"], str(s["horizon"])) for s in api["signals"]
    ]
    for tr, s in zip(trs, api["signals"], strict=True):
        cells = [c.text for c in tr.find_elements("tag name", "td")]
        assert cells[5] == f"{s['confidence']:.3f}"
        assert cells[7] == f"{s['age_days']} d {s['age_bucket']}"
    assert len(trs) == 10
    active = browser.find_element("css selector", "nav a.active").get_attribute("data-view")
    assert active == "top"
    _no_console_errors(browser)
    _docs_copy(_tall_screenshot(browser, "performance-top10"), "performance-top10.png")
