"""The fred macro source through its HTTP layer, against a fake FRED built from hand-written
fixtures in FRED's response format (``tests/fixtures/fred/handwritten_*.json``; nothing here
was recorded from FRED, which these machines cannot reach).

Each series fixture is what FRED answers for the whole real-time period (every vintage as a
real-time period). The fake serves a request's real-time window the way FRED does: periods
that meet the window, cut to it; ``limit``/``offset`` pages; FRED's 400 answers for a bad key,
an unknown series, a ``realtime_end`` after today, a window before the series entered ALFRED,
and a window holding more vintage dates than the cap. Time is a fake clock whose ``sleep``
only advances it, so retries and their backoff are visible as the list of sleeps.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult

import numpy as np
import pandas as pd
import pytest
import requests

from tests.data.fake_http import FakeClock, FakeHttp, response
from turbomode.config import Settings
from turbomode.data.macro import validate_macro
from turbomode.data.sources.fred import FredSource, first_releases, redact
from turbomode.errors import SourceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fred"
KEY = "abcdef0123456789abcdef0123456789"
T0 = pd.Timestamp("2024-03-01 18:00", tz="UTC").timestamp()  # FRED's today: 2024-03-01
SERIES = {
    "curve": "T10Y2Y",
    "claims": "ICSA",
    "money": "M2SL",
    "manufacturing": "GACDFSA066MSFRBPHI",
}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"handwritten_{name}.json").read_text())


@dataclass
class FakeFred(FakeHttp):
    """FRED's ``series/observations`` for the fixture series."""

    vintage_cap: int = 2000
    alfred_from: dict[str, str] = field(default_factory=dict)  # series → first archived day
    down: int = 0  # requests still answered with a connection error naming the URL
    status: list[int] = field(default_factory=list)  # statuses to answer first (e.g. 500, 429)

    def answer(
        self, request: requests.PreparedRequest, url: SplitResult, path: str, params: dict[str, str]
    ) -> requests.Response | None:
        if url.netloc != "api.stlouisfed.org":
            return None
        if self.down > 0:
            self.down -= 1
            raise requests.ConnectionError(
                f"HTTPSConnectionPool(host='api.stlouisfed.org', port=443): Max retries "
                f"exceeded with url: {url.path}?{url.query} (Connection refused)"
            )
        if self.status:
            return response(request, self.status.pop(0), b"<html>busy</html>", "text/html")
        assert path == "/fred/series/observations" and params["file_type"] == "json"
        if params.get("api_key") != KEY:
            return self.error(request, "api_key")
        sid = params["series_id"]
        if not (FIXTURES / f"handwritten_{sid}.json").exists():
            return self.error(request, "bad_series")
        body = fixture(sid)
        today = pd.Timestamp(self.clock.now, unit="s", tz="America/Chicago").tz_localize(None)
        today = today.normalize().strftime("%Y-%m-%d")
        a = params.get("realtime_start", today)
        b = params.get("realtime_end", today)
        if b > today:
            return self.error(request, "realtime_end")
        if b < self.alfred_from.get(sid, "0000"):
            return self.error(request, "not_in_alfred")
        rows = [
            {
                **r,
                "realtime_start": max(r["realtime_start"], a),
                "realtime_end": min(r["realtime_end"], b),
            }
            for r in body["observations"]
            if r["realtime_start"] <= b
            and r["realtime_end"] >= a
            and r["date"] >= params.get("observation_start", "0000")
        ]
        if len({r["realtime_start"] for r in rows}) > self.vintage_cap:
            return self.error(request, "vintage_cap")
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100000))
        body.update(
            realtime_start=a,
            realtime_end=b,
            count=len(rows),
            offset=offset,
            limit=limit,
            observations=rows[offset : offset + limit],
        )
        return response(request, 200, json.dumps(body).encode())

    def error(self, request: Any, name: str) -> requests.Response:
        return response(request, 400, (FIXTURES / f"handwritten_error_{name}.json").read_bytes())

    def windows(self, sid: str) -> list[tuple[str, str]]:
        return sorted(
            {
                (c.params["realtime_start"], c.params["realtime_end"])
                for c in self.calls
                if c.params.get("series_id") == sid and "realtime_start" in c.params
            }
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def fred(clock: FakeClock) -> FakeFred:
    return FakeFred(clock)


def make_settings(tmp_path: Path, **fred: Any) -> Settings:
    cfg = {
        "api_key": KEY,
        "observation_start": "2023-09-01",
        "realtime_window_days": 30,
        "min_interval_s": 0.5,
        "backoff_s": 2.0,
        "max_retries": 3,
        **fred,
    }
    return Settings(data={"data_dir": tmp_path}, fred=cfg)


def source(settings: Settings, fake: FakeFred, clock: FakeClock) -> FredSource:
    return FredSource(settings, session=fake.session(), sleep=clock.sleep, clock=clock.time)


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rows_of(frame: pd.DataFrame, role: str) -> list[tuple[str, str, float]]:
    got = frame[frame["series"] == role]
    return [
        (str(d.date()), str(r.date()), float(v))
        for d, r, v in zip(got["date"], got["realtime_start"], got["value"], strict=True)
    ]


def test_every_vintage_dated_by_its_first_release(tmp_path: Path, fred, clock) -> None:
    settings = make_settings(tmp_path, page_limit=4)
    frame = source(settings, fred, clock).load()
    assert validate_macro(frame).quarantine.empty
    assert set(frame["series"]) == set(SERIES)
    assert dict(zip(frame["series"], frame["source_id"], strict=True)) == SERIES
    claims = rows_of(frame, "claims")
    # the first print on the Thursday after the week, the revision a week later — joined
    # again although the 30-day windows cut their real-time periods
    assert claims[:4] == [
        ("2023-12-02", "2023-12-07", 220000.0),
        ("2023-12-02", "2023-12-14", 221000.0),
        ("2023-12-09", "2023-12-14", 203000.0),
        ("2023-12-09", "2023-12-21", 205000.0),
    ]
    assert claims[-1] == ("2024-02-24", "2024-02-29", 215000.0)
    assert len(claims) == 25  # one row per vintage, none repeated at a window edge
    money = rows_of(frame, "money")
    assert money[:3] == [
        ("2023-09-01", "2023-10-24", 20760.3),
        ("2023-09-01", "2023-11-28", 20757.9),
        ("2023-09-01", "2023-12-26", 20758.4),
    ]
    # the curve: posted the next day; FRED's "." on bond-market holidays is no value
    curve = rows_of(frame, "curve")
    assert curve[0] == ("2024-01-02", "2024-01-03", -0.38)
    assert "2024-01-15" not in {d for d, _, _ in curve} and len(curve) == 39
    # windows: 30 days from the first observation to FRED's today, never past it
    windows = fred.windows("ICSA")
    assert windows[0] == ("2023-09-01", "2023-09-30") and windows[-1][1] == "2024-03-01"
    assert all(b <= "2024-03-01" for _, b in windows)
    # pages of 4 rows: every page asked for, offsets in steps of 4
    offsets = [int(c.params["offset"]) for c in fred.calls if c.params.get("series_id") == "ICSA"]
    assert max(offsets) >= 4 and all(o % 4 == 0 for o in offsets)


def test_a_refused_window_is_split_until_fred_answers(tmp_path: Path, fred, clock) -> None:
    whole = source(make_settings(tmp_path / "a"), fred, clock).load()
    fred.calls.clear()
    fred.vintage_cap = 8  # a 30-day window of a daily series holds ~21 vintage dates
    frame = source(make_settings(tmp_path / "b"), fred, clock).load()
    pd.testing.assert_frame_equal(frame, whole)
    windows = fred.windows("T10Y2Y")
    split = [
        (a, b)
        for a, b in windows
        if any(x == a and y < b for x, y in windows) and any(y == b and x > a for x, y in windows)
    ]
    assert split  # asked whole first, then in halves that meet


def test_windows_before_alfred_hold_nothing(tmp_path: Path, fred, clock) -> None:
    fred.alfred_from = {"GACDFSA066MSFRBPHI": "2024-01-01"}
    frame = source(make_settings(tmp_path), fred, clock).load()
    assert rows_of(frame, "manufacturing") == [
        ("2024-01-01", "2024-01-18", -10.6),
        ("2024-01-01", "2024-02-15", -10.2),
        ("2024-02-01", "2024-02-15", 5.2),
    ]


def test_transient_failures_are_retried_with_backoff(tmp_path: Path, fred, clock) -> None:
    settings = make_settings(tmp_path)
    fred.down, fred.status = 1, [503, 429]
    src = source(settings, fred, clock)
    frame = src.load()
    assert len(rows_of(frame, "claims")) == 25
    # three failures on the first request, then answers: 2 s, 4 s, 8 s of backoff
    assert [s for s in clock.sleeps if s >= 2.0][:3] == [2.0, 4.0, 8.0]


def test_unreachable_fred_is_one_line_without_the_key(tmp_path: Path, fred, clock, caplog) -> None:
    fred.down = 100
    caplog.set_level(logging.INFO, logger="turbomode")
    with pytest.raises(SourceError) as err:
        source(make_settings(tmp_path, max_retries=2), fred, clock).load()
    msg = str(err.value)
    assert msg.startswith("FRED cannot be reached at https://api.stlouisfed.org/fred")
    assert "gave up after 3 tries" in msg and "Connection refused" in msg
    assert "\n" not in msg and KEY not in msg and "api_key=***" in msg
    assert len(fred.calls) == 3
    logged = " ".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    assert "fred.retry" in logged and KEY not in logged


def test_offline_error_against_a_closed_port(tmp_path: Path) -> None:
    """The real requests stack, nothing listening: the one-line error, fast, no key."""
    port = closed_port()
    settings = make_settings(
        tmp_path, base_url=f"http://127.0.0.1:{port}/fred", max_retries=1, backoff_s=0.0
    )
    with pytest.raises(SourceError) as err:
        FredSource(settings).load()
    msg = str(err.value)
    assert msg.startswith(f"FRED cannot be reached at http://127.0.0.1:{port}/fred")
    assert "\n" not in msg and KEY not in msg


def test_refusals_stop_at_once_with_freds_message(tmp_path: Path, fred, clock) -> None:
    bad_key = make_settings(tmp_path, api_key="0" * 32)
    with pytest.raises(SourceError, match=r"FRED refused T10Y2Y: .*api_key is not registered"):
        source(bad_key, fred, clock).load()
    assert len(fred.calls) == 1 and not clock.sleeps
    unknown = Settings(
        data={"data_dir": tmp_path},
        fred={"api_key": KEY, "observation_start": "2023-09-01"},
        macro={"series": {"curve": "NOSUCHSERIES"}},
    )
    with pytest.raises(SourceError, match=r"FRED refused NOSUCHSERIES: .*does not exist"):
        source(unknown, fred, clock).load()


def test_no_key_says_where_to_put_one(tmp_path: Path, fred, clock, monkeypatch) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    settings = make_settings(tmp_path, api_key=None)
    with pytest.raises(SourceError, match="TURBOMODE_FRED__API_KEY or FRED_API_KEY"):
        source(settings, fred, clock).load()
    assert not fred.calls
    monkeypatch.setenv("FRED_API_KEY", KEY)  # the usual variable works too
    assert len(source(settings, fred, clock).load()) > 0


def test_the_cache_answers_for_twelve_hours(tmp_path: Path, fred, clock) -> None:
    settings = make_settings(tmp_path)
    first = source(settings, fred, clock).load()
    asked = len(fred.calls)
    assert asked > 0 and list(Path(settings.fred.cache_dir).glob("*.parquet"))
    clock.now += 11.9 * 3600
    again = source(settings, fred, clock).load()
    assert len(fred.calls) == asked  # no request within the TTL
    pd.testing.assert_frame_equal(again, first)
    clock.now += 0.2 * 3600  # 12.1 h after the fetch
    source(settings, fred, clock).load()
    assert len(fred.calls) > asked


def test_as_known_on_end(tmp_path: Path, fred, clock) -> None:
    frame = source(make_settings(tmp_path), fred, clock).load(end="2024-01-31")
    assert frame["realtime_start"].max() <= pd.Timestamp("2024-01-31")
    money = rows_of(frame, "money")
    assert ("2023-12-01", "2024-02-27", 20790.0) not in money  # revised after the end
    assert ("2023-12-01", "2024-01-23", 20797.2) in money


def test_final_values_are_dated_by_the_release_lag(tmp_path: Path, fred, clock) -> None:
    settings = make_settings(tmp_path, vintages=False)
    frame = source(settings, fred, clock).load()
    assert not fred.windows("M2SL")  # no real-time period asked: today's values
    money = rows_of(frame, "money")
    assert money[0] == ("2023-09-01", "2023-10-31", 20758.4)  # today's value, date + 60 days
    claims = rows_of(frame, "claims")
    assert claims[0] == ("2023-12-02", "2023-12-07", 221000.0)


def test_first_releases_joins_cut_periods_and_marks_withdrawals() -> None:
    today = pd.Timestamp("2024-03-01")
    periods = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01"] * 4 + ["2024-02-01"] * 2 + ["2024-01-05"]),
            "realtime_start": pd.to_datetime(
                [
                    "2024-01-10",  # published
                    "2024-01-31",  # the same period, cut by a window edge
                    "2024-02-10",  # revised
                    "2024-02-20",  # dropped by a later vintage (".")
                    "2024-02-15",
                    "2024-02-25",  # ends with no successor: withdrawn the next day
                    "2024-01-08",  # "." from the start: no value, no row
                ]
            ),
            "realtime_end": pd.to_datetime(
                [
                    "2024-01-30",
                    "2024-02-09",
                    "2024-02-19",
                    None,
                    "2024-02-24",
                    "2024-02-27",
                    None,
                ]
            ),
            "value": [1.0, 1.0, 1.5, np.nan, 7.0, 7.5, np.nan],
        }
    )
    got = first_releases(periods, today)
    rows = [(str(d.date()), str(r.date()), v) for d, r, v in got.itertuples(index=False)]
    assert rows[:3] == [
        ("2024-01-01", "2024-01-10", 1.0),
        ("2024-01-01", "2024-02-10", 1.5),
        ("2024-01-01", "2024-02-20", rows[2][2]),
    ]
    assert np.isnan(rows[2][2])
    assert rows[3:5] == [("2024-02-01", "2024-02-15", 7.0), ("2024-02-01", "2024-02-25", 7.5)]
    assert rows[5][:2] == ("2024-02-01", "2024-02-28") and np.isnan(rows[5][2])
    assert len(rows) == 6


def test_redact_masks_the_key_anywhere() -> None:
    base = "https://api.stlouisfed.org/fred/series/observations?series_id=ICSA"
    assert redact(f"{base}&api_key={KEY}&x=1") == f"{base}&api_key=***&x=1"
    assert redact(f"key {KEY} in a\nmessage", KEY) == "key *** in a message"


def test_the_key_is_masked_in_config_show(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.fred.api_key is not None
    dumped = json.dumps(settings.model_dump(mode="json"))
    assert KEY not in dumped and KEY not in repr(settings)
