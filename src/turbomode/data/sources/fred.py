"""Macro series from FRED's HTTP API, every value dated by its first release (ALFRED vintages).

How a load goes, and why:

* **One series at a time, its real-time axis in windows** (``fred.realtime_window_days``, four
  years): ``fred/series/observations`` with ``realtime_start``/``realtime_end`` returns every
  value each observation had in that real-time period, but FRED refuses a period holding more
  than 2,000 vintage dates (a daily series has one per business day), so a refused window is
  split in two and asked again. Each window is paged (``limit``/``offset``). FRED has no call
  for several series at once; these windows and pages are the batches. ``realtime_end`` is
  never after FRED's today, which it would refuse too.
* **Rows become first releases.** FRED answers real-time periods (``realtime_start`` …
  ``realtime_end``) clipped to the window asked for. Periods of one observation that touch
  and hold the same value are joined again across windows; each period is then one row dated
  by its start (the table of :mod:`turbomode.data.macro`). A value that a later vintage drops
  (FRED's ``"."``, or a period that ends with no successor) becomes a NaN row — a withdrawal.
  Windows before a series entered ALFRED ("does not exist in ALFRED") hold nothing.
* ``fred.vintages: false`` asks for today's values only; each is then dated by its
  observation date plus the series' documented release lag (``macro.release_lag_days``).
* **Retries**: network errors, timeouts, HTTP 429 and 5xx are retried with doubling backoff
  from ``backoff_s``; any other answer (a bad key, an unknown series) stops the load at once
  with FRED's own message. When FRED cannot be reached the error is one line that says so.
* **A cache per series** (parquet, the fetch time in its metadata) answers loads within
  ``cache_ttl_hours`` (12) without a request.
* **The API key is never shown**: it comes from ``fred.api_key`` or ``FRED_API_KEY``, and
  every message — logs and errors, which quote request URLs — passes through :func:`redact`.
* Time comes from an injectable ``clock`` and ``sleep``, so tests run without waiting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from turbomode.config import Settings, get_settings
from turbomode.data.macro import MACRO_COLUMNS, dated_by_release_lag, empty_macro
from turbomode.data.sources.base import DateLike, MacroSource
from turbomode.data.sources.pacing import RateLimiter, back_off
from turbomode.errors import SourceError
from turbomode.io import atomic_path
from turbomode.logs import event

log = logging.getLogger("turbomode.fred")

OBSERVATIONS = "series/observations"
KEY_ENV = "FRED_API_KEY"
VINTAGE_CAP = "exceeds the maximum number of vintage dates"
NOT_IN_ALFRED = "does not exist in ALFRED"
FRED_TZ = ZoneInfo("America/Chicago")  # St. Louis: FRED's "today"
_CACHE_META_KEY = b"turbomode.fred"
_KEY_IN_URL = re.compile(r"(api_key=)[^&\s'\"]+")
_DAY = pd.Timedelta(days=1)


def redact(text: str, key: str | None = None) -> str:
    """``text`` with the API key masked, wherever it appears (a URL's query, a message)."""
    out = _KEY_IN_URL.sub(r"\1***", str(text))
    if key:
        out = out.replace(key, "***")
    return " ".join(out.split())  # one line


class _TransientError(Exception):
    """Worth another try: the network, a timeout, FRED busy (429) or failing (5xx)."""


class _TooManyVintagesError(Exception):
    """FRED refused the real-time window: more than 2,000 vintage dates in it."""


class FredSource(MacroSource):
    """The macro roles of ``macro.series`` from FRED, as vintages."""

    name = "fred"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        on_series: Callable[[str], None] | None = None,
    ) -> None:
        """``session``: a ``requests`` Session (None: a new one); ``on_series`` is told as
        each series is done (the CLI's progress)."""
        self.settings = settings or get_settings()
        self.cfg = self.settings.fred
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._limiter = RateLimiter(self.cfg.min_interval_s, clock, sleep)
        self._on_series = on_series or (lambda _role: None)
        self.requests = 0

    # ---- public ---------------------------------------------------------------------------
    def load(self, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
        """Every configured series from ``start`` (None: ``fred.observation_start``), as known
        on ``end`` (None: today): rows released after ``end`` are left out."""
        key = self._api_key()
        obs_start = pd.Timestamp(start or self.cfg.observation_start).normalize()
        frames = []
        for role, series_id in self.settings.macro.series.items():
            rows = self._cache_read(series_id, obs_start)
            cached = rows is not None
            if rows is None:
                rows = self._fetch_series(series_id, obs_start, key)
                self._cache_write(series_id, obs_start, rows)
            rows = rows.assign(series=role, source_id=series_id)
            if not self.cfg.vintages:
                lags = {str(k): v for k, v in self.settings.macro.release_lag_days.items()}
                rows = dated_by_release_lag(rows, lags)
            frames.append(rows[list(MACRO_COLUMNS)])
            event(
                log, "fred.series", series=role, source_id=series_id, rows=len(rows), cached=cached
            )
            self._on_series(role)
        out = pd.concat(frames, ignore_index=True) if frames else empty_macro()
        if end is not None:
            out = out[out["realtime_start"] <= pd.Timestamp(end)]
        return out.sort_values(["series", "date", "realtime_start"], kind="stable").reset_index(
            drop=True
        )

    # ---- one series -----------------------------------------------------------------------
    def _fetch_series(self, series_id: str, obs_start: pd.Timestamp, key: str) -> pd.DataFrame:
        """(date, realtime_start, value) first-release rows of one series."""
        today = self._today()
        if not self.cfg.vintages:
            rows = self._window(series_id, obs_start, None, None, key)
            rows = rows.dropna(subset=["value"])
            return rows[["date", "realtime_start", "value"]].reset_index(drop=True)
        step = pd.Timedelta(days=self.cfg.realtime_window_days)
        pending = []
        a = obs_start
        while a <= today:
            b = min(a + step - _DAY, today)
            pending.append((a, b))
            a = b + _DAY
        parts = []
        while pending:
            a, b = pending.pop(0)
            try:
                parts.append(self._window(series_id, obs_start, a, b, key))
            except _TooManyVintagesError:
                if a == b:
                    raise SourceError(
                        f"FRED refuses {series_id}'s one-day real-time window {a.date()}"
                    ) from None
                mid = a + (b - a) / 2
                mid = mid.normalize()
                pending[:0] = [(a, mid), (mid + _DAY, b)]
        periods = pd.concat(parts, ignore_index=True) if parts else _periods_frame()
        if periods.empty:
            raise SourceError(f"FRED has no observations of {series_id} since {obs_start.date()}")
        return first_releases(periods, today)

    def _window(
        self,
        series_id: str,
        obs_start: pd.Timestamp,
        rt_start: pd.Timestamp | None,
        rt_end: pd.Timestamp | None,
        key: str,
    ) -> pd.DataFrame:
        """Every page of one real-time window, as FRED's periods (date, realtime_start,
        realtime_end, value)."""
        params: dict[str, Any] = {
            "series_id": series_id,
            "api_key": key,
            "file_type": "json",
            "observation_start": obs_start.strftime("%Y-%m-%d"),
            "sort_order": "asc",
            "limit": self.cfg.page_limit,
        }
        if rt_start is not None and rt_end is not None:
            params["realtime_start"] = rt_start.strftime("%Y-%m-%d")
            params["realtime_end"] = rt_end.strftime("%Y-%m-%d")
        pages: list[list[dict[str, str]]] = []
        offset = 0
        while True:
            body = self._get(OBSERVATIONS, {**params, "offset": offset}, key)
            if body is None:  # not in ALFRED for this window
                break
            got = body.get("observations") or []
            pages.append(got)
            offset += len(got)
            if not got or offset >= int(body.get("count", 0)):
                break
        records = [r for page in pages for r in page]
        if not records:
            return _periods_frame()
        frame = pd.DataFrame.from_records(records)
        return pd.DataFrame(
            {
                "date": pd.to_datetime(frame["date"]).astype("datetime64[ns]"),
                "realtime_start": pd.to_datetime(frame["realtime_start"]).astype("datetime64[ns]"),
                # 9999-12-31 (open) does not fit a timestamp: the window's end stands for it
                "realtime_end": pd.to_datetime(
                    frame["realtime_end"].where(frame["realtime_end"] < "2200-01-01"),
                    errors="coerce",
                ).astype("datetime64[ns]"),
                "value": pd.to_numeric(frame["value"].replace(".", np.nan), errors="coerce"),
            }
        )

    # ---- HTTP -----------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, Any], key: str) -> dict[str, Any] | None:
        """One call with retries; the JSON body, or None when the series is not in ALFRED
        for the window asked."""
        url = f"{self.cfg.base_url.rstrip('/')}/{path}"
        retries = self.cfg.max_retries
        last = ""
        for attempt in range(retries + 1):
            back_off(attempt, self.cfg.backoff_s, self._sleep)
            self._limiter.wait()
            self.requests += 1
            try:
                return self._call(url, params)
            except _TransientError as exc:
                last = redact(str(exc), key)
                event(
                    log,
                    "fred.retry",
                    logging.INFO,
                    series=params.get("series_id"),
                    attempt=attempt + 1,
                    error=last,
                )
        raise SourceError(
            f"FRED cannot be reached at {self.cfg.base_url} (gave up after {retries + 1} "
            f"tries): {last}"
        )

    def _call(self, url: str, params: dict[str, Any]) -> dict[str, Any] | None:
        import requests

        session = self._session
        if session is None:
            session = self._session = requests.Session()
        try:
            response = session.get(url, params=params, timeout=self.cfg.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
        except requests.RequestException as exc:
            what = redact(f"{type(exc).__name__}: {exc}", params.get("api_key"))
            raise SourceError(f"FRED request failed: {what}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _TransientError(f"HTTP {status}")
        try:
            body = response.json()
        except ValueError as exc:
            if status == 200:
                raise _TransientError(f"unreadable answer: {exc}") from exc
            body = {}
        message = str(body.get("error_message", "")) if isinstance(body, dict) else ""
        if status != 200 or "error_code" in body:
            if VINTAGE_CAP in message:
                raise _TooManyVintagesError(message)
            if NOT_IN_ALFRED in message:
                return None
            what = message or f"HTTP {status}"
            raise SourceError(
                f"FRED refused {params.get('series_id')}: {redact(what, params.get('api_key'))}"
            )
        if not isinstance(body, dict):
            raise _TransientError("unexpected answer: not a JSON object")
        return body

    # ---- cache ----------------------------------------------------------------------------
    def _cache_path(self, series_id: str, obs_start: pd.Timestamp) -> Path:
        mode = "vintages" if self.cfg.vintages else "current"
        name = f"{quote(series_id, safe='')}-{mode}-{obs_start.strftime('%Y%m%d')}.parquet"
        return Path(self.cfg.cache_dir) / name

    def _cache_read(self, series_id: str, obs_start: pd.Timestamp) -> pd.DataFrame | None:
        """The cached rows when younger than the TTL."""
        path = self._cache_path(series_id, obs_start)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[_CACHE_META_KEY])
        except Exception as exc:
            event(log, "fred.cache_unreadable", logging.WARNING, path=str(path), error=str(exc))
            return None
        age_s = self._clock() - float(meta["fetched_at"])
        if not 0 <= age_s < self.cfg.cache_ttl_hours * 3600:
            return None
        return table.to_pandas()

    def _cache_write(self, series_id: str, obs_start: pd.Timestamp, rows: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(rows, preserve_index=False)
        meta = {"series_id": series_id, "fetched_at": self._clock()}
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _CACHE_META_KEY: json.dumps(meta).encode()}
        )
        with atomic_path(self._cache_path(series_id, obs_start)) as tmp:
            pq.write_table(table, tmp)

    # ---- helpers --------------------------------------------------------------------------
    def _api_key(self) -> str:
        secret = self.cfg.api_key
        key = secret.get_secret_value().strip() if secret is not None else ""
        key = key or os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise SourceError(
                "FRED needs an API key: set TURBOMODE_FRED__API_KEY or FRED_API_KEY (a free "
                "key: https://fred.stlouisfed.org/docs/api/api_key.html)"
            )
        return key

    def _today(self) -> pd.Timestamp:
        return pd.Timestamp(datetime.fromtimestamp(self._clock(), FRED_TZ).date())


def _periods_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.Series(dtype="datetime64[ns]"),
            "realtime_start": pd.Series(dtype="datetime64[ns]"),
            "realtime_end": pd.Series(dtype="datetime64[ns]"),
            "value": pd.Series(dtype="float64"),
        }
    )


def first_releases(periods: pd.DataFrame, today: pd.Timestamp) -> pd.DataFrame:
    """FRED's real-time periods (possibly cut at window edges) → one row per value, dated by
    the first day it was public; a value dropped by a later vintage → a NaN row that day.

    A period that runs to ``today`` (or is open, NaT) is current; one that ends earlier with no
    period of the same observation starting the next day was withdrawn the day after it ends.
    """
    p = periods.sort_values(["date", "realtime_start"], kind="stable").reset_index(drop=True)
    end = p["realtime_end"].fillna(today)
    end = end.where(end <= today, today)
    same_date = p["date"].eq(p["date"].shift())
    v, pv = p["value"], p["value"].shift()
    same_value = (v == pv) | (v.isna() & pv.isna())
    touches = (end.shift() + _DAY) >= p["realtime_start"]
    period = (~(same_date & same_value & touches)).cumsum()
    g = pd.DataFrame({"date": p["date"], "start": p["realtime_start"], "end": end, "value": v})
    joined = g.groupby(period, sort=False).agg(
        date=("date", "first"), start=("start", "min"), end=("end", "max"), value=("value", "first")
    )
    nxt_date = joined["date"].shift(-1)
    nxt_start = joined["start"].shift(-1)
    gap = (joined["end"] < today) & ~(
        (nxt_date == joined["date"]) & (nxt_start == joined["end"] + _DAY)
    )
    gone = joined[gap & joined["value"].notna()]
    withdrawals = pd.DataFrame({"date": gone["date"], "start": gone["end"] + _DAY, "value": np.nan})
    rows = pd.concat([joined[["date", "start", "value"]], withdrawals], ignore_index=True)
    rows = rows.sort_values(["date", "start"], kind="stable").reset_index(drop=True)
    # a NaN row means something only after a published value
    prev_value = rows.groupby("date")["value"].shift()
    prev_exists = rows["date"].eq(rows["date"].shift())
    keep = rows["value"].notna() | (prev_exists & prev_value.notna())
    rows = rows[keep]
    # consecutive NaN rows (a withdrawal then a ".") say the same thing once
    again = (
        rows["value"].isna() & rows["date"].eq(rows["date"].shift()) & rows["value"].shift().isna()
    )
    rows = rows[~again]
    return pd.DataFrame(
        {
            "date": rows["date"].to_numpy(),
            "realtime_start": rows["start"].to_numpy(),
            "value": rows["value"].to_numpy(dtype=np.float64),
        }
    )
