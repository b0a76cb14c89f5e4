"""The earnings calendar: yfinance against hand-written pages in Yahoo's format, CSV, blackout
windows, status.

The yfinance path runs yfinance's real request and parsing code (``get_earnings_dates``, which
scrapes ``finance.yahoo.com/calendar/earnings``); the seam is the HTTP transport, as in
``test_yahoo.py``: a ``requests.Session`` whose adapter answers from
``tests/fixtures/handwritten_yahoo``. The ``earnings_*.html`` pages are written by hand in the
shape of Yahoo's page (the one table, its six columns, "Month D, YYYY at H PM EST/EDT" dates),
trimmed to the markup yfinance reads; ``earnings_not_found.html`` is the page without a table
that Yahoo serves for a symbol it has no earnings for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult

import numpy as np
import pandas as pd
import pytest
import requests
import yfinance as yf

from tests.data.fake_http import Call, FakeClock, FakeHttp, reset_once, response
from turbomode.config import Settings, load_settings
from turbomode.data.earnings import (
    RULE_OFF_NO_CALENDAR,
    EarningsCalendar,
    earnings_flags,
    nyse_holidays,
)
from turbomode.errors import SchemaError

YAHOO = Path(__file__).resolve().parents[1] / "fixtures" / "handwritten_yahoo"

AAPL_DATES = [
    "2023-05-04",
    "2023-08-03",
    "2023-11-02",
    "2024-02-01",
    "2024-05-02",
    "2024-08-01",
    "2024-10-31",
    "2025-01-30",
    "2025-05-01",
    "2025-07-31",
    "2025-10-30",
    "2026-01-29",  # upcoming: estimate only
]
MSFT_DATES = [
    "2024-01-30",
    "2024-04-25",
    "2024-07-30",
    "2024-10-30",  # listed twice on the page (4 PM and 5 PM rows): one date
    "2025-01-29",
    "2025-04-30",
    "2025-07-30",
    "2025-10-29",
    "2026-01-28",
]
JPM_DATES = [
    "2024-01-12",
    "2024-04-12",
    "2024-07-12",
    "2024-10-11",
    "2025-01-15",
    "2025-04-11",
    "2025-07-15",
    "2025-10-14",
    "2026-01-13",
]


@pytest.fixture(scope="module", autouse=True)
def _yfinance_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep yfinance's own timezone/cookie caches out of the user's home directory."""
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-internal")))


@dataclass
class FakeYahoo(FakeHttp):
    """The server side of every request yfinance sends for an earnings page."""

    pages: dict[str, str] = field(default_factory=dict)  # symbol -> fixture name override

    def earnings_calls(self, symbol: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.path == "/calendar/earnings" and (symbol is None or c.params["symbol"] == symbol)
        ]

    def answer(
        self, request: requests.PreparedRequest, url: SplitResult, path: str, params: dict[str, str]
    ) -> requests.Response | None:
        if url.netloc == "finance.yahoo.com" and path == "/calendar/earnings":
            symbol = params["symbol"]
            reset_once(self, symbol, url.netloc)
            name = self.pages.get(symbol, f"earnings_{symbol}.html")
            page = YAHOO / name
            if not page.exists():
                page = YAHOO / "earnings_not_found.html"
            return response(request, 200, page.read_bytes(), "text/html; charset=utf-8")
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def yahoo(clock: FakeClock) -> FakeYahoo:
    return FakeYahoo(clock)


def settings(**yfinance: Any) -> Settings:
    opts = {"min_interval_s": 0.0, "max_retries": 3, "backoff_s": 0.5, **yfinance}
    return load_settings(yfinance=opts)


def load(
    yahoo: FakeYahoo, clock: FakeClock, symbols: list[str], **yfinance: Any
) -> EarningsCalendar:
    return EarningsCalendar.from_yfinance(
        symbols,
        settings=settings(**yfinance),
        session=yahoo.session(),
        sleep=clock.sleep,
        clock=clock.time,
    )


def days(values: list[str]) -> list[pd.Timestamp]:
    return [pd.Timestamp(v) for v in values]


# ---- yfinance with hand-written responses -----------------------------------------------------
def test_handwritten_pages_parse_to_exact_past_and_upcoming_dates(
    yahoo: FakeYahoo, clock: FakeClock
) -> None:
    cal = load(yahoo, clock, ["AAPL", "MSFT", "JPM"])

    assert cal.available and cal.source == "yfinance"
    assert cal.symbols == ["AAPL", "JPM", "MSFT"]
    assert list(cal.dates("AAPL")) == days(AAPL_DATES)
    assert list(cal.dates("MSFT")) == days(MSFT_DATES)
    # JPM reports before the open (6 AM): the date is the report's New York date all the same.
    assert list(cal.dates("JPM")) == days(JPM_DATES)
    assert cal.frame["date"].dtype == "datetime64[ns]"
    assert len(cal) == 12 + 9 + 9
    assert cal.report is not None and cal.report.ok
    assert cal.report.loaded == {"AAPL": 12, "MSFT": 9, "JPM": 9}
    assert cal.next_date("AAPL", "2025-11-01") == pd.Timestamp("2026-01-29")
    assert cal.next_date("AAPL", "2024-05-02") == pd.Timestamp("2024-05-02")
    assert cal.next_date("AAPL", "2026-02-01") is None

    # One page per symbol, Yahoo's largest page (size=100) from the newest row (offset=0).
    calls = yahoo.earnings_calls()
    assert [c.params["symbol"] for c in calls] == ["AAPL", "MSFT", "JPM"]
    assert all(c.host == "finance.yahoo.com" for c in calls)
    assert all((c.params["offset"], c.params["size"]) == ("0", "100") for c in calls)
    assert yahoo.unexpected == []
    assert clock.sleeps == []


def test_failed_symbol_is_reported_and_the_good_ones_kept(
    yahoo: FakeYahoo, clock: FakeClock
) -> None:
    cal = load(yahoo, clock, ["AAPL", "ZZZZ", "MSFT", "AAPL"])

    assert cal.symbols == ["AAPL", "MSFT"]
    assert "ZZZZ" not in cal and list(cal.dates("ZZZZ")) == []
    assert list(cal.dates("AAPL")) == days(AAPL_DATES)
    report = cal.report
    assert report is not None and not report.ok
    assert report.requested == ("AAPL", "ZZZZ", "MSFT")
    assert list(report.failed) == ["ZZZZ"]
    assert report.failed["ZZZZ"].startswith("no earnings dates: ")
    assert "1 failed" in report.summary() and "ZZZZ: no earnings dates" in report.summary()
    # Yahoo's answer is final: one request, no backoff.
    assert len(yahoo.earnings_calls("ZZZZ")) == 1
    assert clock.sleeps == []
    # A symbol the calendar does not cover is never "in blackout" by accident.
    assert cal.in_blackout("ZZZZ", "2024-05-02") is False


def test_transient_errors_are_retried_with_doubling_backoff(
    yahoo: FakeYahoo, clock: FakeClock
) -> None:
    yahoo.fail["AAPL"] = 2
    cal = load(yahoo, clock, ["AAPL", "MSFT"], max_retries=3, backoff_s=0.5)
    assert cal.report is not None and cal.report.failed == {}
    assert list(cal.dates("AAPL")) == days(AAPL_DATES)
    assert clock.sleeps == [0.5, 1.0]
    assert len(yahoo.earnings_calls("AAPL")) == 3


def test_gives_up_after_max_retries_and_keeps_the_rest(yahoo: FakeYahoo, clock: FakeClock) -> None:
    yahoo.fail["AAPL"] = 100
    cal = load(yahoo, clock, ["AAPL", "MSFT"], max_retries=2, backoff_s=1.0)
    assert cal.report is not None
    reason = cal.report.failed["AAPL"]
    assert reason.startswith("gave up after 2 retries; last error: ConnectionError")
    assert "Connection reset by peer" in reason
    assert clock.sleeps == [1.0, 2.0]
    assert yahoo.fail["AAPL"] == 100 - 3
    assert cal.symbols == ["MSFT"]


def test_requests_are_spaced_by_the_rate_limit(yahoo: FakeYahoo, clock: FakeClock) -> None:
    load(yahoo, clock, ["AAPL", "MSFT", "JPM"], min_interval_s=1.5)
    assert clock.sleeps == [1.5, 1.5]
    times = [c.at for c in yahoo.earnings_calls()]
    assert all(b - a >= 1.5 for a, b in pairwise(times))


def test_a_second_load_asks_yahoo_again(yahoo: FakeYahoo, clock: FakeClock) -> None:
    """yfinance memoizes page GETs by URL; a later load must not get the earlier answer."""
    yahoo.pages["AAPL"] = "earnings_not_found.html"
    first = load(yahoo, clock, ["AAPL"])
    assert first.report is not None and "AAPL" in first.report.failed
    del yahoo.pages["AAPL"]
    second = load(yahoo, clock, ["AAPL"])
    assert list(second.dates("AAPL")) == days(AAPL_DATES)
    assert len(yahoo.earnings_calls("AAPL")) == 2


def test_nothing_loaded_means_no_calendar(yahoo: FakeYahoo, clock: FakeClock) -> None:
    cal = load(yahoo, clock, ["ZZZZ"])
    assert not cal.available
    out = earnings_flags(cal, pd.DataFrame({"symbol": ["ZZZZ"], "date": ["2024-05-02"]}))
    assert not out.rule_on
    assert out.status.startswith(RULE_OFF_NO_CALENDAR + " (yfinance: 0 of 1 symbol(s) loaded")
    assert out.flags.tolist() == [False]


def test_bad_yfinance_arguments_are_named(yahoo: FakeYahoo, clock: FakeClock) -> None:
    with pytest.raises(TypeError, match="list of tickers"):
        load(yahoo, clock, "AAPL")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be"):
        EarningsCalendar.from_yfinance(
            ["AAPL"], settings=settings(), session=yahoo.session(), limit=101
        )
    assert yahoo.calls == []


# ---- CSV ---------------------------------------------------------------------------------------
def test_csv_reads_symbol_date_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "earnings.csv"
    path.write_text(
        "symbol,date,note\n"
        "MSFT,2024-04-25,q3\n"
        "AAPL,2024-05-02,q2\n"
        " AAPL ,2024-02-01,q1\n"
        "AAPL,2024-05-02,duplicate\n"
        "XOM,,no date known\n"
    )
    cal = EarningsCalendar.from_csv(path)
    assert cal.source == "csv:earnings.csv"
    assert cal.symbols == ["AAPL", "MSFT", "XOM"]
    assert list(cal.dates("AAPL")) == days(["2024-02-01", "2024-05-02"])
    assert list(cal.dates("MSFT")) == days(["2024-04-25"])
    assert list(cal.dates("XOM")) == [] and "XOM" in cal
    assert cal.in_blackout("AAPL", "2024-05-01") and not cal.in_blackout("XOM", "2024-05-01")

    out = cal.to_csv(tmp_path / "sub" / "saved.csv")
    assert out.read_text().splitlines() == [
        "symbol,date",
        "AAPL,2024-02-01",
        "AAPL,2024-05-02",
        "MSFT,2024-04-25",
        "XOM,",
    ]
    again = EarningsCalendar.from_csv(out)
    assert again.symbols == cal.symbols
    pd.testing.assert_frame_equal(again.frame, cal.frame)


def test_yfinance_calendar_saves_and_reloads(
    yahoo: FakeYahoo, clock: FakeClock, tmp_path: Path
) -> None:
    cal = load(yahoo, clock, ["AAPL", "MSFT"])
    again = EarningsCalendar.from_csv(cal.to_csv(tmp_path / "earnings.csv"))
    pd.testing.assert_frame_equal(again.frame, cal.frame)
    assert again.symbols == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("ticker,date\nAAPL,2024-05-02\n", SchemaError, r"missing column\(s\) \['symbol'\]"),
        ("symbol,date\nAAPL,2024-13-45\n", ValueError, r"unparseable date\(s\) \['2024-13-45'\]"),
        ("symbol,date\nAAPL,2024-05-02\n,2024-05-03\n", SchemaError, r"empty symbol on line"),
    ],
)
def test_bad_csv_is_named(tmp_path: Path, text: str, error: type[Exception], match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=match):
        EarningsCalendar.from_csv(path)


# ---- blackout windows --------------------------------------------------------------------------
@pytest.fixture
def calendar() -> EarningsCalendar:
    return EarningsCalendar(
        pd.DataFrame(
            {
                "symbol": ["AAPL", "JPM", "XYZ"],
                # Thu; Fri before MLK Monday; Wed after Good Friday 2024-03-29
                "date": ["2024-05-02", "2024-01-12", "2024-04-03"],
            }
        )
    )


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2024-04-25", False),  # Thu, 5 sessions before
        ("2024-04-26", False),  # Fri, 4 sessions before
        ("2024-04-27", True),  # Sat: counts as Mon, 3 sessions before
        ("2024-04-28", True),  # Sun: likewise
        ("2024-04-29", True),  # Mon, 3 before
        ("2024-04-30", True),  # Tue, 2 before
        ("2024-05-01", True),  # Wed, 1 before
        ("2024-05-02", True),  # Thu, the earnings date
        ("2024-05-03", True),  # Fri, 1 after
        ("2024-05-04", False),  # Sat: counts as Mon, 2 after
        ("2024-05-05", False),  # Sun: likewise
        ("2024-05-06", False),  # Mon, 2 after
    ],
)
def test_three_sessions_before_one_after(
    calendar: EarningsCalendar, day: str, expected: bool
) -> None:
    assert calendar.in_blackout("AAPL", day) is expected
    assert calendar.in_blackout("AAPL", pd.Timestamp(f"{day} 21:30")) is expected


@pytest.mark.parametrize(
    ("symbol", "day", "expected"),
    [
        # JPM 2024-01-12 (Fri); Mon 2024-01-15 is Martin Luther King Jr. Day, no session.
        ("JPM", "2024-01-08", False),  # Mon, 4 before
        ("JPM", "2024-01-09", True),  # Tue, 3 before
        ("JPM", "2024-01-13", True),  # Sat: counts as Tue the 16th, 1 after
        ("JPM", "2024-01-15", True),  # the holiday: likewise
        ("JPM", "2024-01-16", True),  # Tue, 1 session after (4 calendar days)
        ("JPM", "2024-01-17", False),  # Wed, 2 after
        # XYZ 2024-04-03 (Wed); Good Friday 2024-03-29 is an NYSE holiday (not a federal one).
        ("XYZ", "2024-03-27", False),  # Wed, 4 before
        ("XYZ", "2024-03-28", True),  # Thu, 3 before (Fri the 29th is not a session)
        ("XYZ", "2024-03-29", True),  # Good Friday: counts as Mon, 2 before
        ("XYZ", "2024-04-04", True),
        ("XYZ", "2024-04-05", False),
    ],
)
def test_holidays_are_not_sessions(
    calendar: EarningsCalendar, symbol: str, day: str, expected: bool
) -> None:
    assert calendar.in_blackout(symbol, day) is expected


def test_window_sizes_are_parameters(calendar: EarningsCalendar) -> None:
    assert calendar.in_blackout("AAPL", "2024-05-02", before=0, after=0)
    assert not calendar.in_blackout("AAPL", "2024-05-01", before=0, after=0)
    assert not calendar.in_blackout("AAPL", "2024-05-03", before=0, after=0)
    assert calendar.in_blackout("AAPL", "2024-04-25", before=5)
    assert not calendar.in_blackout("AAPL", "2024-04-24", before=5)
    assert calendar.in_blackout("AAPL", "2024-05-07", after=3)
    assert not calendar.in_blackout("AAPL", "2024-05-08", after=3)
    with pytest.raises(ValueError, match="before must be"):
        calendar.in_blackout("AAPL", "2024-05-02", before=-1)
    with pytest.raises(ValueError, match="after must be"):
        calendar.in_blackout("AAPL", "2024-05-02", after=1.5)  # type: ignore[arg-type]


def test_vectorized_blackout_matches_the_scalar_test() -> None:
    # Two reports 6 sessions apart, so the windows of both ends are exercised for one symbol.
    cal = EarningsCalendar(
        pd.DataFrame(
            {
                "symbol": ["AAA", "AAA", "BBB"],
                "date": ["2024-06-03", "2024-06-11", "2024-06-05"],
            }
        )
    )
    grid = pd.date_range("2024-05-20", "2024-06-25", freq="D")
    frame = pd.DataFrame(
        {
            "symbol": np.repeat(["AAA", "BBB", "CCC"], len(grid)),
            "date": np.tile(grid, 3),
        },
        index=pd.RangeIndex(1000, 1000 + 3 * len(grid)),
    ).sample(frac=1.0, random_state=3)
    flags = cal.blackout(frame)
    assert flags.index.equals(frame.index) and flags.dtype == bool
    loop = [cal.in_blackout(s, d) for s, d in zip(frame["symbol"], frame["date"], strict=True)]
    assert flags.tolist() == loop
    hit = frame[flags.to_numpy()]
    assert set(hit["symbol"]) == {"AAA", "BBB"}
    aaa = sorted(hit.loc[hit["symbol"] == "AAA", "date"].dt.strftime("%m-%d"))
    # 06-03 (Mon): 05-29..06-04, weekend 05-25/26 counts as Mon 05-27 (Memorial Day) ->
    # Tue 05-28 (4 before, out). 06-11 (Tue): 06-06..06-12.
    assert aaa == [
        "05-29",
        "05-30",
        "05-31",
        "06-01",
        "06-02",
        "06-03",
        "06-04",
        "06-06",
        "06-07",
        "06-08",
        "06-09",
        "06-10",
        "06-11",
        "06-12",
    ]


def test_nyse_holidays_follow_exchange_rules() -> None:
    h = {str(d) for d in nyse_holidays()}
    assert {"2024-03-29", "2024-06-19", "2024-01-15", "2021-12-24", "2025-01-09"} <= h
    assert "2021-12-31" not in h  # Saturday New Year's Day is not observed on the Friday
    assert "2024-10-14" not in h  # Columbus Day: a federal holiday, the exchange is open


# ---- the scan's status line --------------------------------------------------------------------
SIGNALS = pd.DataFrame(
    {
        "symbol": ["AAPL", "AAPL", "JPM", "NVDA"],
        "date": pd.to_datetime(["2024-04-26", "2024-04-29", "2024-01-16", "2024-05-01"]),
    },
    index=[10, 11, 12, 13],
)


def test_without_a_calendar_the_rule_is_off_and_says_so() -> None:
    for cal in (None, EarningsCalendar.empty()):
        out = earnings_flags(cal, SIGNALS)
        assert out.status == "earnings rule off: no calendar"
        assert not out.rule_on
        assert out.flags.tolist() == [False] * 4
        assert out.flags.index.equals(SIGNALS.index)
    why = earnings_flags(EarningsCalendar.empty("earnings source not configured"), SIGNALS)
    assert why.status == "earnings rule off: no calendar (earnings source not configured)"


def test_with_a_calendar_flags_and_status(calendar: EarningsCalendar) -> None:
    out = earnings_flags(calendar, SIGNALS)
    assert out.rule_on
    assert out.flags.to_dict() == {10: False, 11: True, 12: True, 13: False}
    assert out.unchecked == ("NVDA",)
    assert out.status == (
        "earnings rule on: 3 trading day(s) before to 1 after an earnings date (frame); "
        "2 of 4 signal(s) in blackout; 1 symbol(s) not in the calendar, not checked: NVDA"
    )
    # The signals store's frame names its date column signal_date.
    stored = SIGNALS.rename(columns={"date": "signal_date"})
    assert earnings_flags(calendar, stored).flags.tolist() == out.flags.tolist()
    narrow = earnings_flags(calendar, SIGNALS, before=0, after=0)
    assert narrow.flags.tolist() == [False, False, False, False]
    assert "0 of 4 signal(s) in blackout" in narrow.status


def test_empty_signals(calendar: EarningsCalendar) -> None:
    none = pd.DataFrame({"symbol": pd.Series(dtype=str), "date": pd.Series(dtype="datetime64[ns]")})
    out = earnings_flags(calendar, none)
    assert out.rule_on and out.flags.empty
    assert "0 of 0 signal(s)" in out.status
