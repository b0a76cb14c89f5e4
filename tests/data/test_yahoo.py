"""YFinanceSource against hand-written responses in Yahoo's formats (not captures: Yahoo cannot be
reached from the test machines), with yfinance's real request and parsing code.

The seam is the HTTP transport: a ``requests.Session`` (a session type yfinance accepts) whose
transport adapter answers from ``tests/fixtures/handwritten_yahoo`` the way Yahoo does: v8 chart
JSON for known symbols (sliced to the requested period1/period2), Yahoo's 404 "No data found, symbol
may be delisted" body for others, and the cookie/crumb/consent requests yfinance makes first.
Time is a fake clock whose ``sleep`` only advances it, so rate limits and backoff are visible
as the list of requested sleeps.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import pandas as pd
import pytest
import requests
import yfinance as yf
from requests.adapters import HTTPAdapter
from typer.testing import CliRunner

from tests.data.fake_http import Call, FakeClock, FakeHttp, reset_once, response
from turbomode.cli.main import app
from turbomode.config import Settings, load_settings
from turbomode.data.schema import PRICE_COLUMNS
from turbomode.data.sources.yahoo import YFinanceSource
from turbomode.errors import SourceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
YAHOO = FIXTURES / "handwritten_yahoo"
SP500_PAGE = FIXTURES / "handwritten_sp500" / "list_of_sp500_companies.html"
START, END = "2024-01-02", "2024-02-13"
T0 = pd.Timestamp("2024-02-20 12:00", tz="UTC").timestamp()
MARKET = ("SPY", "^VIX", "XLK")


@pytest.fixture(scope="module", autouse=True)
def _yfinance_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep yfinance's own timezone/cookie caches out of the user's home directory."""
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-internal")))


@dataclass
class FakeYahoo(FakeHttp):
    """The server side of every request yfinance (and the page fetch) sends."""

    def history_calls(self, symbol: str | None = None) -> list[Call]:
        """Chart requests for a date range: the price downloads (the rest are tz lookups)."""
        return [
            c
            for c in self.calls
            if c.path.startswith("/v8/finance/chart/")
            and "period1" in c.params
            and (symbol is None or c.path.endswith("/" + symbol))
        ]

    def answer(
        self, request: requests.PreparedRequest, url: SplitResult, path: str, params: dict[str, str]
    ) -> requests.Response | None:
        if path.startswith("/v8/finance/chart/"):
            symbol = path.rsplit("/", 1)[1]
            reset_once(self, symbol, url.netloc)
            return self._chart(request, symbol, params)
        if url.netloc == "en.wikipedia.org":
            return response(request, 200, SP500_PAGE.read_bytes(), "text/html; charset=UTF-8")
        if path.startswith("/v10/finance/quoteSummary/"):
            symbol = path.rsplit("/", 1)[1]
            body = {
                "quoteSummary": {
                    "result": None,
                    "error": {
                        "code": "Not Found",
                        "description": f"Quote not found for symbol: {symbol}",
                    },
                }
            }
            return response(request, 404, json.dumps(body).encode())
        return None

    def _chart(self, request: Any, symbol: str, params: dict[str, str]) -> requests.Response:
        path = YAHOO / f"chart_{symbol.replace('^', '_')}.json"
        if not path.exists():
            return response(request, 404, (YAHOO / "chart_not_found.json").read_bytes())
        body = json.loads(path.read_bytes())
        result = body["chart"]["result"][0]
        stamps = result["timestamp"]
        if "period1" in params:
            lo, hi = int(params["period1"]), int(params["period2"])
            keep = [i for i, t in enumerate(stamps) if lo <= t < hi]
        else:  # range=1d, the timezone lookup: the latest bar only
            keep = [len(stamps) - 1]
        result["timestamp"] = [stamps[i] for i in keep]
        for block in (result["indicators"]["quote"][0], result["indicators"]["adjclose"][0]):
            for key, values in block.items():
                block[key] = [values[i] for i in keep]
        kept = set(result["timestamp"])
        for kind, events in result.get("events", {}).items():
            result["events"][kind] = {k: v for k, v in events.items() if v["date"] in kept}
        return response(request, 200, json.dumps(body).encode())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def yahoo(clock: FakeClock) -> FakeYahoo:
    return FakeYahoo(clock)


@pytest.fixture
def constituents(tmp_path: Path) -> Path:
    path = tmp_path / "constituents.csv"
    pd.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "BRK-B", "ZZZZ"],
            "name": ["Apple", "Microsoft", "Berkshire Hathaway", "Delisted Corp"],
            "sector": ["Information Technology", "Information Technology", "Financials", "Energy"],
        }
    ).to_csv(path, index=False)
    return path


def make_settings(tmp_path: Path, constituents: Path | None, **yfinance: Any) -> Settings:
    opts = {
        "batch_size": 50,
        "min_interval_s": 0.0,
        "max_retries": 3,
        "backoff_s": 0.5,
        "cache_dir": tmp_path / "cache",
        "cache_ttl_hours": 12.0,
        **yfinance,
    }
    return load_settings(data={"constituents_path": constituents}, yfinance=opts)


def make_source(
    tmp_path: Path,
    constituents: Path | None,
    yahoo: FakeYahoo,
    clock: FakeClock,
    market: tuple[str, ...] = (),
    **yfinance: Any,
) -> YFinanceSource:
    return YFinanceSource(
        make_settings(tmp_path, constituents, **yfinance),
        session=yahoo.session(),
        sleep=clock.sleep,
        clock=clock.time,
        market_symbols=market,
    )


# ---- parsing ---------------------------------------------------------------------------------
def test_handwritten_chart_becomes_canonical_adjusted_frame(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock)
    data = src.load(["AAPL", "MSFT"], START, END)

    prices = data.prices
    assert list(prices.columns) == list(PRICE_COLUMNS)
    assert prices["date"].dtype == "datetime64[ns]"
    assert (prices["date"] == prices["date"].dt.normalize()).all()
    assert all(prices[c].dtype == "float64" for c in ("open", "high", "low", "close", "volume"))
    assert prices.equals(prices.sort_values(["symbol", "date"]).reset_index(drop=True))
    # 30 sessions; MSFT's 2024-01-24 bar is all null in the response and is dropped.
    assert prices.groupby("symbol").size().to_dict() == {"AAPL": 30, "MSFT": 29}
    assert pd.Timestamp("2024-01-24") not in set(prices.loc[prices.symbol == "MSFT", "date"])
    assert data.skipped == {}
    assert data.source == "yfinance"
    assert data.market.empty and list(data.market.columns) == list(PRICE_COLUMNS)

    aapl = prices[prices.symbol == "AAPL"].set_index("date")
    # Before the 2024-02-09 ex-dividend date Yahoo's adjclose is below close; auto_adjust
    # scales open/high/low by adjclose/close and uses adjclose as the close.
    first = aapl.loc["2024-01-02"]
    assert first["close"] == pytest.approx(187.6645050048828, abs=1e-9)  # raw close 187.9057
    assert first["open"] == pytest.approx(187.7071595406917, abs=1e-9)
    assert first["high"] == pytest.approx(188.27968124694544, abs=1e-9)
    assert first["low"] == pytest.approx(187.32588986173397, abs=1e-9)
    assert first["volume"] == 60861500.0
    # From the ex-date on, adjusted equals raw.
    ex_date = aapl.loc["2024-02-09"]
    assert ex_date["close"] == pytest.approx(187.93997192382812, abs=1e-9)
    assert ex_date["open"] == pytest.approx(187.89962768554688, abs=1e-9)
    assert ex_date["volume"] == 47662800.0
    assert aapl.index.min() == pd.Timestamp(START) and aapl.index.max() == pd.Timestamp(END)


def test_market_symbols_land_in_market_frame(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock, market=MARKET)
    data = src.load(["AAPL"], START, END)
    assert set(data.prices["symbol"]) == {"AAPL"}
    assert sorted(set(data.market["symbol"])) == sorted(MARKET)
    assert list(data.market.columns) == list(PRICE_COLUMNS)
    assert data.market.groupby("symbol").size().to_dict() == {"SPY": 30, "XLK": 30, "^VIX": 30}
    vix = data.market[data.market.symbol == "^VIX"]
    assert (vix["volume"] == 0.0).all() and (vix["close"] > 0).all()
    assert data.skipped == {}
    assert yahoo.unexpected == []


# ---- batching and rate limiting --------------------------------------------------------------
def test_batches_of_batch_size_with_a_pause_between(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(
        tmp_path,
        constituents,
        yahoo,
        clock,
        market=("SPY", "^VIX"),
        batch_size=2,
        min_interval_s=1.5,
    )
    data = src.load(["AAPL", "MSFT", "BRK-B"], START, END)
    assert data.skipped == {}
    calls = yahoo.history_calls()
    # One chart request per symbol (the v8 API is per symbol), sent in 3 batches: 2 + 2 + 1.
    assert len(calls) == 5
    assert Counter(c.path.rsplit("/", 1)[1] for c in calls) == Counter(
        ["AAPL", "MSFT", "BRK-B", "SPY", "^VIX"]
    )
    per_batch = Counter(c.at for c in calls)
    assert sorted(per_batch.values(), reverse=True) == [2, 2, 1]
    assert clock.sleeps == [1.5, 1.5]


@pytest.mark.parametrize(("interval", "expected"), [(0.75, [0.75, 0.75]), (0.0, [])])
def test_rate_limit_spaces_requests(
    tmp_path: Path,
    constituents: Path,
    yahoo: FakeYahoo,
    clock: FakeClock,
    interval: float,
    expected: list[float],
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock, batch_size=1, min_interval_s=interval)
    src.load(["AAPL", "MSFT", "BRK-B"], START, END)
    assert clock.sleeps == expected
    times = sorted(c.at for c in yahoo.history_calls())
    assert len(times) == 3
    assert all(b - a >= interval for a, b in pairwise(times))


# ---- retries ---------------------------------------------------------------------------------
def test_transient_failures_are_retried_with_doubling_backoff(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    # The batch attempt and two retries hit a reset connection; the third retry gets through.
    yahoo.fail["AAPL"] = 3
    src = make_source(tmp_path, constituents, yahoo, clock, max_retries=3, backoff_s=0.5)
    data = src.load(["AAPL", "MSFT"], START, END)
    assert data.skipped == {}
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert data.prices.groupby("symbol").size().to_dict() == {"AAPL": 30, "MSFT": 29}
    assert yahoo.fail["AAPL"] == 0


def test_gives_up_after_max_retries_and_reports_why(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    yahoo.fail["AAPL"] = 100
    src = make_source(tmp_path, constituents, yahoo, clock, max_retries=2, backoff_s=1.0)
    data = src.load(["AAPL", "MSFT"], START, END)
    assert clock.sleeps == [1.0, 2.0]
    assert set(data.prices["symbol"]) == {"MSFT"}
    reason = data.skipped["AAPL"]
    assert reason.startswith("gave up after 2 retries")
    assert "ConnectionError" in reason and "Connection reset by peer" in reason
    assert yahoo.fail["AAPL"] == 100 - 3  # one batch attempt + two retries, no more


def test_retries_off_reports_the_symbol(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    yahoo.fail["AAPL"] = 100
    src = make_source(tmp_path, constituents, yahoo, clock, max_retries=0)
    data = src.load(["AAPL", "MSFT"], START, END)
    assert clock.sleeps == []
    assert "max_retries=0" in data.skipped["AAPL"]
    assert set(data.prices["symbol"]) == {"MSFT"}


# ---- unknown and delisted symbols ------------------------------------------------------------
def test_delisted_symbol_is_skipped_with_reason_and_not_retried(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(
        tmp_path, constituents, yahoo, clock, market=("SPY",), max_retries=3, backoff_s=0.5
    )
    data = src.load(["AAPL", "ZZZZ", "MSFT"], START, END)
    assert set(data.prices["symbol"]) == {"AAPL", "MSFT"}
    assert set(data.market["symbol"]) == {"SPY"}
    assert list(data.skipped) == ["ZZZZ"]
    assert data.skipped["ZZZZ"].startswith("unknown or delisted: ")
    # Yahoo's answer is final: one follow-up call to learn the reason, no backoff ladder.
    assert clock.sleeps == [0.5]
    chart_zzzz = [c for c in yahoo.calls if c.path == "/v8/finance/chart/ZZZZ"]
    assert chart_zzzz, "ZZZZ was asked of Yahoo"
    assert yahoo.unexpected == []


def test_symbol_outside_universe_is_skipped_without_a_request(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock, market=("SPY",))
    data = src.load(["AAPL", "NOPE", "SPY"], START, END)  # SPY: a market symbol, not a stock
    assert data.skipped == {"NOPE": "not in the universe (constituents list)"}
    assert not [c for c in yahoo.calls if "NOPE" in c.path]
    assert set(data.prices["symbol"]) == {"AAPL"}
    assert set(data.market["symbol"]) == {"SPY"}


# ---- Yahoo out of reach ----------------------------------------------------------------------
class ClosedPort(HTTPAdapter):
    """The real transport, with every request sent to a local port nobody listens on: the
    connection fails as it does with no network."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(str(request.url))
        request.url = urlunsplit(("http", f"127.0.0.1:{self.port}", url.path, url.query, ""))
        return super().send(request, **kwargs)


def closed_session(port: int) -> requests.Session:
    session = requests.Session()
    session.mount("https://", ClosedPort(port))
    session.mount("http://", ClosedPort(port))
    return session


def test_unreachable_yahoo_stops_the_load_after_one_symbol(
    tmp_path: Path, constituents: Path, clock: FakeClock, closed_port: int
) -> None:
    src = YFinanceSource(
        make_settings(tmp_path, constituents, max_retries=3, backoff_s=0.5),
        session=closed_session(closed_port),
        sleep=clock.sleep,
        clock=clock.time,
        market_symbols=MARKET,
    )
    with pytest.raises(SourceError) as caught:
        src.load(["AAPL", "MSFT", "ZZZZ"], START, END)
    message = str(caught.value)
    assert message.startswith(f"yfinance: cannot reach 127.0.0.1:{closed_port} (ConnectionError: ")
    assert "Connection refused" in message and "AAPL failed its 3 retries" in message
    assert "delisted" not in message and "\n" not in message
    assert clock.sleeps == [0.5, 1.0, 2.0]  # one symbol's backoff, not every symbol's


def test_unreachable_yahoo_is_one_line_on_the_command_line(
    tmp_path: Path,
    constituents: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    closed_port: int,
) -> None:
    session = closed_session(closed_port)
    monkeypatch.setattr(YFinanceSource, "_yf_session", lambda self: session)
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"data:\n  constituents_path: {constituents}\n"
        f"yfinance:\n  backoff_s: 0\n  min_interval_s: 0\n  cache_dir: {tmp_path / 'cache'}\n"
    )
    args = ["-c", str(config), "--data-dir", str(tmp_path), "ingest", "--source", "yfinance"]
    result = CliRunner().invoke(app, [*args, "--symbols", "AAPL,MSFT"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # no per-ticker "possibly delisted", no traceback
    assert lines[0].startswith(f"error: yfinance: cannot reach 127.0.0.1:{closed_port}")
    # yfinance's own per-ticker lines ("possibly delisted", ...) go to stderr outside pytest.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("yfinance")] == []


# ---- cache -----------------------------------------------------------------------------------
def test_fresh_cache_makes_no_request(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock, market=("SPY",))
    first = src.load(["AAPL", "MSFT"], START, END)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "AAPL.parquet",
        "MSFT.parquet",
        "SPY.parquet",
    ]
    n_calls = len(yahoo.calls)

    clock.now += 11 * 3600  # within the 12 h TTL
    again = make_source(tmp_path, constituents, yahoo, clock, market=("SPY",))
    second = again.load(["AAPL", "MSFT"], START, END)
    assert len(yahoo.calls) == n_calls
    pd.testing.assert_frame_equal(first.prices, second.prices)
    pd.testing.assert_frame_equal(first.market, second.market)

    # A narrower window is served from the same files, cut to the window.
    narrow = again.load(["AAPL"], "2024-01-10", "2024-01-12")
    assert len(yahoo.calls) == n_calls
    assert narrow.prices["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-10",
        "2024-01-11",
        "2024-01-12",
    ]


def test_expired_or_uncovering_cache_refetches(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock)
    src.load(["AAPL", "MSFT"], START, END)
    assert len(yahoo.history_calls()) == 2

    clock.now += 13 * 3600  # past the 12 h TTL
    src.load(["AAPL", "MSFT"], START, END)
    assert len(yahoo.history_calls()) == 4
    assert len(yahoo.history_calls("AAPL")) == 2

    # Fresh again, but a wider window than the cache holds must go to Yahoo.
    src.load(["AAPL"], "2023-12-01", END)
    assert len(yahoo.history_calls("AAPL")) == 3


# ---- universe and input checks ---------------------------------------------------------------
def test_universe_from_sp500_page_when_no_constituents_file(
    tmp_path: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, None, yahoo, clock)
    data = src.load(["BRK-B", "AAPL"], START, END)
    assert {"BRK-B", "BF-B", "AAPL", "MSFT"} <= set(data.universe.symbols)
    assert len(data.universe) == 6
    assert data.universe.sector_of("BRK-B") == "Financials"
    assert set(data.prices["symbol"]) == {"AAPL", "BRK-B"}
    assert any(c.host == "en.wikipedia.org" for c in yahoo.calls)


def test_bad_input_is_named(
    tmp_path: Path, constituents: Path, yahoo: FakeYahoo, clock: FakeClock
) -> None:
    src = make_source(tmp_path, constituents, yahoo, clock)
    with pytest.raises(ValueError, match="after end"):
        src.load(["AAPL"], "2024-02-13", "2024-01-02")
    with pytest.raises(ValueError, match="must be dates"):
        src.load(["AAPL"], "not-a-date", END)
    with pytest.raises(TypeError, match="list of tickers"):
        src.load("AAPL", START, END)
    assert yahoo.calls == []
