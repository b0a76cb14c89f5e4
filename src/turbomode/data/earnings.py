"""Earnings calendar for the Smart Scanner's earnings avoidance (no new entries just before or
just after a company reports).

Where the dates come from:

* **yfinance** (:meth:`EarningsCalendar.from_yfinance`): ``Ticker.get_earnings_dates`` of the
  installed yfinance (1.7), which reads Yahoo's earnings calendar page
  ``https://finance.yahoo.com/calendar/earnings?symbol=SYM&offset=0&size=N`` and parses its
  table: past reports and the next scheduled ones in a single request per symbol. Symbols
  Yahoo has no table for, or that keep failing after retries, are listed with the reason in
  :class:`EarningsLoadReport`; the good symbols are kept, so one bad ticker never costs the
  rest of the calendar.
* **a CSV file** (:meth:`EarningsCalendar.from_csv`, columns ``symbol,date``) for users with
  their own source; :meth:`EarningsCalendar.to_csv` writes the same format, so a fetched
  calendar can be saved and reused offline.

No calendar is a normal state, not an error: :meth:`EarningsCalendar.empty` (or ``None``)
turns the rule off, and :func:`earnings_flags` says so in its status line for the scan output.

**The blackout convention is in trading sessions** (NYSE days: weekdays minus exchange
holidays, :func:`nyse_holidays`). With ``before=3, after=1`` a date is in blackout when it is
one of the 3 sessions before an earnings date, the earnings date's session itself, or the one
session after. Sessions rather than calendar days, because "3 days before" should mean three
chances to trade, whether or not a weekend or a holiday sits in between. The window covers
both report times: a before-the-open report moves the stock on its own date, an after-the-close
report on the next session — hence the one session after. A date that is not a session (a
weekend, a holiday) counts as the next session, the one on which a signal from it would be
acted on; an earnings date on a non-session rolls forward the same way. Dates are the
exchange's local (New York) calendar dates; the time of day is dropped.

**Point in time.** Companies announce their report dates weeks ahead, so using a known
earnings date E at a date t < E does not leak information in a backtest or a replay: the date
was public at t. What is *not* point-in-time is a date that moved after t (a rescheduled
report) — the calendar holds the final dates. Nothing here uses the reported numbers (EPS,
surprise), only the dates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.holiday import (
    AbstractHolidayCalendar,
    GoodFriday,
    Holiday,
    USLaborDay,
    USMartinLutherKingJr,
    USMemorialDay,
    USPresidentsDay,
    USThanksgivingDay,
    nearest_workday,
    sunday_to_monday,
)

from turbomode.config import Settings, get_settings
from turbomode.data.sources.pacing import RateLimiter, back_off
from turbomode.data.sources.yahoo import _forget_yfinance_responses
from turbomode.errors import SchemaError
from turbomode.io import atomic_path

log = logging.getLogger(__name__)

Day = str | date | datetime | pd.Timestamp
EARNINGS_COLUMNS: tuple[str, ...] = ("symbol", "date")
DEFAULT_BEFORE = 3
DEFAULT_AFTER = 1
EXCHANGE_TZ = "America/New_York"
YAHOO_EARNINGS_LIMIT = 100  # Yahoo's page size cap: one request covers ~25 years of quarters
RULE_OFF_NO_CALENDAR = "earnings rule off: no calendar"

_NO_TABLE = (
    "no earnings dates: Yahoo's earnings calendar page has no table for the symbol "
    "(unknown, delisted, or not covered)"
)
# Unscheduled full-day NYSE closures (the rule-based holidays are in _NYSE_RULES).
_SPECIAL_CLOSURES: tuple[str, ...] = (
    "1985-09-27",  # Hurricane Gloria
    "1994-04-27",  # Nixon's funeral
    "2001-09-11",
    "2001-09-12",
    "2001-09-13",
    "2001-09-14",  # September 11
    "2004-06-11",  # Reagan's funeral
    "2007-01-02",  # Ford's funeral
    "2012-10-29",
    "2012-10-30",  # Hurricane Sandy
    "2018-12-05",  # G. H. W. Bush's funeral
    "2025-01-09",  # Carter's funeral
)
_HOLIDAY_YEARS = (1980, 2100)
_KEY_SPAN = np.int64(1) << np.int64(32)  # room per symbol in the (symbol, session) sort key


# ---- trading sessions --------------------------------------------------------------------------
# NYSE full-day holidays by rule. A Saturday New Year's Day is not observed (the exchange stays
# open on Dec 31); other Saturday holidays close the Friday before, Sunday ones the Monday after.
_NYSE_RULES: list[Holiday] = [
    Holiday("New Year's Day", month=1, day=1, observance=sunday_to_monday),
    Holiday(
        "Martin Luther King Jr. Day",
        start_date=pd.Timestamp("1998-01-01"),
        month=1,
        day=1,
        offset=USMartinLutherKingJr.offset,
    ),
    USPresidentsDay,
    GoodFriday,
    USMemorialDay,
    Holiday(
        "Juneteenth",
        month=6,
        day=19,
        start_date=pd.Timestamp("2022-01-01"),
        observance=nearest_workday,
    ),
    Holiday("Independence Day", month=7, day=4, observance=nearest_workday),
    USLaborDay,
    USThanksgivingDay,
    Holiday("Christmas Day", month=12, day=25, observance=nearest_workday),
]


@lru_cache(maxsize=1)
def nyse_holidays() -> np.ndarray:
    """NYSE full-day closures 1980–2100 as ``datetime64[D]``, for numpy's business-day functions.

    Rule-based holidays plus the unscheduled closures listed in this module (through 2025);
    early-close days are sessions. Close to, not identical with, the exchange's own calendar.
    """
    first, last = _HOLIDAY_YEARS
    rules = AbstractHolidayCalendar("NYSE", _NYSE_RULES).holidays(
        pd.Timestamp(f"{first}-01-01"), pd.Timestamp(f"{last}-12-31")
    )
    days = rules.union(pd.DatetimeIndex(_SPECIAL_CLOSURES))
    out = np.asarray(days.values.astype("datetime64[D]"))
    out.setflags(write=False)
    return out


def _session_index(dates: pd.DatetimeIndex | pd.Series | np.ndarray) -> np.ndarray:
    """Ordinal of each date's session (non-sessions roll forward to the next one), so the
    difference of two ordinals is a distance in trading sessions."""
    days = np.asarray(pd.DatetimeIndex(dates).values.astype("datetime64[D]"))
    holidays = nyse_holidays()
    rolled = np.busday_offset(days, 0, roll="forward", holidays=holidays)
    origin = np.datetime64("1970-01-01", "D")
    return np.asarray(np.busday_count(origin, rolled, holidays=holidays), dtype=np.int64)


# ---- load report -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EarningsLoadReport:
    """What a load asked for, what it got, and why the rest is missing."""

    source: str
    requested: tuple[str, ...]
    loaded: dict[str, int] = field(default_factory=dict)  # symbol -> number of dates
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line for logs and the scan output."""
        text = f"{self.source}: {len(self.loaded)} of {len(self.requested)} symbol(s) loaded"
        if self.failed:
            shown = "; ".join(f"{s}: {r}" for s, r in list(self.failed.items())[:5])
            more = f" (+{len(self.failed) - 5} more)" if len(self.failed) > 5 else ""
            text += f", {len(self.failed)} failed — {shown}{more}"
        return text


# ---- the calendar ------------------------------------------------------------------------------
class EarningsCalendar:
    """Earnings dates (past and upcoming) per symbol, and the blackout test over them.

    A symbol is *covered* when the source answered for it, even with no dates; a symbol that is
    not covered cannot be checked, and :func:`earnings_flags` lists it rather than silently
    calling it clear. A calendar that covers no symbol is not ``available``.
    """

    def __init__(
        self,
        dates: pd.DataFrame,
        *,
        covered: Iterable[str] | None = None,
        source: str = "frame",
        report: EarningsLoadReport | None = None,
        reason: str | None = None,
    ) -> None:
        """``dates``: columns ``symbol, date`` (one row per earnings date; extra columns are
        ignored). ``covered``: symbols the source answered for; default the symbols in
        ``dates``. ``reason``: why the calendar is empty, for :meth:`empty`."""
        missing = [c for c in EARNINGS_COLUMNS if c not in dates.columns]
        if missing:
            raise SchemaError(f"earnings dates lack column(s) {missing}; need symbol,date")
        frame = pd.DataFrame(
            {
                "symbol": dates["symbol"].astype(str).str.strip().to_numpy(),
                "date": _to_dates(dates["date"], "earnings dates"),
            }
        )
        if (frame["symbol"] == "").any():
            raise SchemaError("earnings dates have rows with an empty symbol")
        frame = frame.drop_duplicates().sort_values(["symbol", "date"], ignore_index=True)
        self._frame = frame
        self._covered = frozenset(frame["symbol"]) | frozenset(
            str(s).strip() for s in (() if covered is None else covered)
        )
        self.source = source
        self.report = report
        self._reason = reason
        # Sort keys for the vectorized blackout test: symbol code * span + session ordinal.
        self._codes = {s: i for i, s in enumerate(sorted(self._covered))}
        codes = frame["symbol"].map(self._codes).to_numpy(dtype=np.int64)
        self._keys = np.sort(codes * _KEY_SPAN + _session_index(frame["date"]))

    # ---- constructors --------------------------------------------------------------------------
    @classmethod
    def empty(cls, reason: str | None = None) -> EarningsCalendar:
        """No calendar: the earnings rule is off. ``reason`` is shown in the status line."""
        return cls(pd.DataFrame(columns=list(EARNINGS_COLUMNS)), source="none", reason=reason)

    @classmethod
    def from_csv(cls, path: Path | str) -> EarningsCalendar:
        """A ``symbol,date`` CSV (ISO dates; extra columns ignored). A row with a symbol and an
        empty date marks the symbol as covered with no known earnings date."""
        path = Path(path)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in EARNINGS_COLUMNS if c not in raw.columns]
        if missing:
            raise SchemaError(f"{path}: missing column(s) {missing}; need symbol,date")
        symbols = raw["symbol"].str.strip()
        if (symbols == "").any():
            rows = (np.flatnonzero(symbols == "") + 2).tolist()[:10]
            raise SchemaError(f"{path}: empty symbol on line(s) {rows}")
        has_date = raw["date"].str.strip() != ""
        dates = pd.DataFrame({"symbol": symbols[has_date], "date": raw["date"][has_date]})
        try:
            return cls(dates, covered=symbols, source=f"csv:{path.name}")
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def from_yfinance(
        cls,
        symbols: Sequence[str],
        *,
        settings: Settings | None = None,
        session: Any = None,
        limit: int = YAHOO_EARNINGS_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> EarningsCalendar:
        """Earnings dates for ``symbols`` from Yahoo through ``yf.Ticker.get_earnings_dates``.

        One request per symbol (``limit`` rows, at most 100), spaced by
        ``settings.yfinance.min_interval_s``. Network errors and rate limits are retried
        ``max_retries`` times with doubling backoff from ``backoff_s``; a page without a table
        or an unparseable one ends the symbol at once. Failures are in ``report.failed``.
        ``session``: a ``curl_cffi`` or ``requests`` Session for every request (None: one
        ``curl_cffi`` session impersonating a browser, as yfinance itself would make).
        """
        if isinstance(symbols, str):
            raise TypeError(f"symbols must be a list of tickers, not the string {symbols!r}")
        if not 1 <= limit <= YAHOO_EARNINGS_LIMIT:
            raise ValueError(f"limit must be 1..{YAHOO_EARNINGS_LIMIT} (Yahoo's cap), not {limit}")
        cfg = (settings or get_settings()).yfinance
        if session is None:
            from curl_cffi import requests as curl_requests

            session = curl_requests.Session(impersonate="chrome")
        limiter = RateLimiter(cfg.min_interval_s, clock, sleep)
        wanted = tuple(dict.fromkeys(str(s).strip() for s in symbols if str(s).strip()))
        frames: list[pd.DataFrame] = []
        loaded: dict[str, int] = {}
        failed: dict[str, str] = {}
        for sym in wanted:
            got, reason = _fetch_symbol(sym, session, limit, limiter, cfg, sleep)
            if got is None:
                failed[sym] = reason
                continue
            frames.append(pd.DataFrame({"symbol": sym, "date": got}))
            loaded[sym] = len(got)
        report = EarningsLoadReport("yfinance", wanted, loaded, failed)
        if failed:
            log.warning("earnings calendar: %s", report.summary())
        dates = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=list(EARNINGS_COLUMNS))
        )
        why = None if loaded else report.summary()
        return cls(dates, covered=loaded, source="yfinance", report=report, reason=why)

    def to_csv(self, path: Path | str) -> Path:
        """Write ``symbol,date`` (covered symbols without dates as a row with an empty date),
        readable by :meth:`from_csv`; atomic, so a crash keeps the previous file."""
        dated = self._frame.assign(date=self._frame["date"].dt.strftime("%Y-%m-%d"))
        bare = sorted(self._covered - set(self._frame["symbol"]))
        out = pd.concat(
            [dated, pd.DataFrame({"symbol": bare, "date": [""] * len(bare)})], ignore_index=True
        ).sort_values(["symbol", "date"], ignore_index=True)
        target = Path(path)
        with atomic_path(target) as tmp:
            out.to_csv(tmp, index=False)
        return target

    # ---- queries -------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """True when the calendar covers at least one symbol, i.e. the rule can run."""
        return bool(self._covered)

    @property
    def reason(self) -> str | None:
        """Why the calendar is not available (None when it is, or when no reason was given)."""
        return None if self.available else self._reason

    @property
    def symbols(self) -> list[str]:
        """Covered symbols, sorted."""
        return sorted(self._covered)

    @property
    def frame(self) -> pd.DataFrame:
        """All earnings dates: ``symbol, date`` (datetime64, midnight), sorted."""
        return self._frame.copy()

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._covered

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        return (
            f"EarningsCalendar(source={self.source!r}, symbols={len(self._covered)}, "
            f"dates={len(self._frame)})"
        )

    def dates(self, symbol: str) -> pd.DatetimeIndex:
        """The symbol's earnings dates, ascending (empty when none or not covered)."""
        rows = self._frame.loc[self._frame["symbol"] == symbol, "date"]
        return pd.DatetimeIndex(rows.to_numpy(), name="date")

    def next_date(self, symbol: str, on: Day) -> pd.Timestamp | None:
        """The first earnings date on or after ``on`` (None when none is known)."""
        day = pd.Timestamp(on).normalize()
        later = self.dates(symbol)
        later = later[later >= day]
        return pd.Timestamp(later[0]) if len(later) else None

    def in_blackout(
        self,
        symbol: str,
        date: Day,
        before: int = DEFAULT_BEFORE,
        after: int = DEFAULT_AFTER,
    ) -> bool:
        """Whether ``date`` is within ``before`` sessions before to ``after`` sessions after one
        of the symbol's earnings dates (the convention is in the module docstring). False for
        symbols the calendar does not cover."""
        query = pd.DataFrame({"symbol": [symbol], "date": [pd.Timestamp(date)]})
        return bool(self.blackout(query, before, after).iloc[0])

    def blackout(
        self,
        frame: pd.DataFrame,
        before: int = DEFAULT_BEFORE,
        after: int = DEFAULT_AFTER,
        *,
        date_col: str = "date",
        symbol_col: str = "symbol",
    ) -> pd.Series:
        """:meth:`in_blackout` for every row of ``frame`` at once; a bool Series on its index."""
        _check_window(before, after)
        missing = [c for c in (symbol_col, date_col) if c not in frame.columns]
        if missing:
            raise SchemaError(f"blackout needs column(s) {missing} in the frame")
        out = np.zeros(len(frame), dtype=bool)
        codes = frame[symbol_col].astype(str).map(self._codes)
        known = codes.notna().to_numpy()
        if known.any() and len(self._keys):
            days = _to_dates(frame.loc[known, date_col], date_col)
            base = codes[known].to_numpy(dtype=np.int64) * _KEY_SPAN
            here = base + _session_index(days)
            # The first earnings session at or after (date - after) must be <= date + before.
            pos = np.searchsorted(self._keys, here - after, side="left")
            found = pos < len(self._keys)
            first = self._keys[np.minimum(pos, len(self._keys) - 1)]
            out[known] = found & (first <= here + before)
        return pd.Series(out, index=frame.index, name="earnings_blackout")


# ---- the scan's view ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EarningsFlags:
    """Blackout flags for a set of signals, and the line the scan output shows about them."""

    flags: pd.Series  # bool, on the signals' index; all False when the rule is off
    status: str
    rule_on: bool
    unchecked: tuple[str, ...] = ()  # symbols the calendar does not cover


def earnings_flags(
    calendar: EarningsCalendar | None,
    signals: pd.DataFrame,
    *,
    before: int = DEFAULT_BEFORE,
    after: int = DEFAULT_AFTER,
    date_col: str | None = None,
) -> EarningsFlags:
    """Flag the signals that fall in an earnings blackout, and say whether the rule ran.

    Without a calendar (None, or one that covers no symbol) nothing is flagged and the status
    starts with ``"earnings rule off: no calendar"``, so the output never implies a check that
    did not happen. ``date_col``: the signals' date column (default ``date``, else
    ``signal_date``).
    """
    _check_window(before, after)
    col = date_col or ("date" if "date" in signals.columns else "signal_date")
    none = pd.Series(np.zeros(len(signals), dtype=bool), index=signals.index)
    if calendar is None or not calendar.available:
        why = calendar.reason if calendar is not None else None
        status = RULE_OFF_NO_CALENDAR + (f" ({why})" if why else "")
        return EarningsFlags(none.rename("earnings_blackout"), status, rule_on=False)
    flags = calendar.blackout(signals, before, after, date_col=col)
    symbols = signals["symbol"].astype(str)
    unchecked = tuple(sorted(set(symbols) - set(calendar.symbols)))
    status = (
        f"earnings rule on: {before} trading day(s) before to {after} after an earnings date "
        f"({calendar.source}); {int(flags.sum())} of {len(signals)} signal(s) in blackout"
    )
    if unchecked:
        shown = ", ".join(unchecked[:10]) + (" …" if len(unchecked) > 10 else "")
        status += f"; {len(unchecked)} symbol(s) not in the calendar, not checked: {shown}"
    return EarningsFlags(flags, status, rule_on=True, unchecked=unchecked)


# ---- helpers -----------------------------------------------------------------------------------
def _check_window(before: int, after: int) -> None:
    for name, value in (("before", before), ("after", after)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a whole number of sessions >= 0, not {value!r}")


def _to_dates(values: pd.Series, what: str) -> np.ndarray:
    """Dates as datetime64[ns] midnights; errors name the values that do not parse."""
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if parsed.isna().any():
        shown = values[parsed.isna()].astype(str).unique().tolist()[:5]
        raise ValueError(f"{what}: unparseable date(s) {shown}")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None)
    return np.asarray(parsed.dt.normalize().to_numpy(dtype="datetime64[ns]"))


def _is_transient(exc: BaseException) -> bool:
    """Network trouble and rate limits: worth another try. Everything else is final."""
    from yfinance.exceptions import YFRateLimitError

    return isinstance(exc, OSError | TimeoutError | YFRateLimitError) or type(exc).__name__ in {
        "ConnectionError",
        "Timeout",
        "ConnectTimeout",
        "ReadTimeout",
        "ChunkedEncodingError",
        "RemoteDisconnected",
    }


def _fetch_symbol(
    sym: str,
    session: Any,
    limit: int,
    limiter: RateLimiter,
    cfg: Any,
    sleep: Callable[[float], None],
) -> tuple[pd.DatetimeIndex | None, str]:
    """One symbol's earnings dates (exchange-local calendar dates) or why there are none."""
    import yfinance as yf

    last = ""
    for attempt in range(cfg.max_retries + 1):
        back_off(attempt, cfg.backoff_s, sleep)
        limiter.wait()
        # yfinance memoizes page GETs in-process; a retry must really ask Yahoo again.
        _forget_yfinance_responses()
        try:
            raw = yf.Ticker(sym, session=session).get_earnings_dates(limit=limit)
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
            if not _is_transient(exc):
                return None, f"unreadable earnings page: {last}"
            log.info("earnings: %s attempt %d failed: %s", sym, attempt + 1, last)
            continue
        if raw is None:
            return None, _NO_TABLE
        try:
            return _local_dates(raw.index), ""
        except (TypeError, ValueError) as exc:
            return None, f"unreadable earnings dates: {type(exc).__name__}: {exc}"
    return None, f"gave up after {cfg.max_retries} retries; last error: {last}"


def _local_dates(index: pd.Index) -> pd.DatetimeIndex:
    """yfinance's index of tz-aware report times -> unique calendar dates in New York."""
    days: set[pd.Timestamp] = set()
    for value in index:
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            continue
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert(EXCHANGE_TZ).tz_localize(None)
        days.add(stamp.normalize())
    return pd.DatetimeIndex(np.array(sorted(days), dtype="datetime64[ns]"), name="date")
