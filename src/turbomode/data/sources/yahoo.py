"""Live daily prices from Yahoo Finance through the ``yfinance`` library.

How a load goes, and why:

* **Batches through ``yf.download``** (``batch_size`` symbols a call, ``threads=False``): the
  polite, documented bulk path. Yahoo's v8 chart API serves one symbol per HTTP request, so
  a batch is ``batch_size`` sequential requests; ``min_interval_s`` separates batch calls.
* **Per-symbol follow-up through ``Ticker.history``** for every symbol a batch did not
  deliver. ``yf.download`` (1.7) turns each symbol's exception into a log line and an empty
  column, so from the batch alone a network blip and a delisted ticker look the same. The
  single-symbol call, with ``yf.config.debug.hide_exceptions`` off, raises the real error:
  transient ones (network, timeouts, HTTP 5xx/429, unparseable bodies) are retried with
  exponential backoff; Yahoo's "no data / possibly delisted" answers end the symbol at once
  and land in ``MarketData.skipped`` with the reason. One symbol never fails the whole load;
  Yahoo being unreachable does: when a symbol has used up its retries on connection errors
  (DNS, refused, proxy, TLS) and nothing came back from Yahoo since the load began (or since
  the last symbol that gave up so), the load stops with one :class:`SourceError` instead of
  walking every other symbol through the same backoff and calling each one delisted.
* **An on-disk cache per symbol** (parquet, with the fetch time and covered range in the file's
  metadata) answers repeated loads within ``cache_ttl_hours`` without a request.
* Time comes from an injectable ``clock`` and ``sleep``, so tests run without waiting.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from turbomode.config import MARKET_SYMBOLS, Settings, get_settings
from turbomode.data.schema import PRICE_COLUMNS, PRICE_FIELDS, canonical_order, empty_prices
from turbomode.data.sources.base import (
    DateLike,
    MarketData,
    MarketDataSource,
    date_range,
    filter_frame,
)
from turbomode.data.sources.pacing import RateLimiter, back_off
from turbomode.data.sp500_page import fetch_sp500_constituents
from turbomode.data.universe import Universe
from turbomode.errors import SourceError
from turbomode.io import atomic_path

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
_CACHE_META_KEY = b"turbomode.yfinance"
_NOT_IN_UNIVERSE = "not in the universe (constituents list)"


class _PermanentError(Exception):
    """Yahoo answered that it has no data for the symbol; retrying would not change that."""


@dataclass(frozen=True)
class _Window:
    """The inclusive date range asked for; ``start`` None means all history."""

    start: pd.Timestamp | None
    end: pd.Timestamp

    def yf_kwargs(self) -> dict[str, Any]:
        # yfinance's end is exclusive; ours is inclusive.
        end = (self.end + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        if self.start is None:
            return {"period": "max", "end": end}
        return {"start": self.start.strftime("%Y-%m-%d"), "end": end}

    def covered_by(self, start: pd.Timestamp | None, end: pd.Timestamp) -> bool:
        starts_early = start is None or (self.start is not None and start <= self.start)
        return starts_early and end >= self.end


class YFinanceSource(MarketDataSource):
    """Daily OHLCV for S&P 500 stocks and the market-context symbols, adjusted for splits and
    dividends (``auto_adjust``), from Yahoo Finance."""

    name = "yfinance"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        market_symbols: Sequence[str] = MARKET_SYMBOLS,
    ) -> None:
        """``session``: a ``curl_cffi`` or ``requests`` Session for every Yahoo (and Wikipedia)
        request; None makes one ``curl_cffi`` session with browser impersonation, as yfinance
        itself would, and keeps it so Yahoo's cookie and crumb are fetched once."""
        self.settings = settings or get_settings()
        self.cfg = self.settings.yfinance
        self.market_symbols = list(dict.fromkeys(market_symbols))
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._limiter = RateLimiter(self.cfg.min_interval_s, clock, sleep)

    # ---- public ---------------------------------------------------------------------------
    def load(
        self,
        symbols: Sequence[str] | None = None,
        start: DateLike = None,
        end: DateLike = None,
    ) -> MarketData:
        """Prices for ``symbols`` (None: the universe) and the market symbols, start..end
        inclusive (None: all history / today). Symbols Yahoo cannot deliver are in ``skipped``."""
        if isinstance(symbols, str):
            raise TypeError(f"symbols must be a list of tickers, not the string {symbols!r}")
        window = self._window(start, end)
        universe = self.universe()
        skipped: dict[str, str] = {}
        if symbols is None:
            stocks = universe.symbols
        else:
            stocks = []
            for raw in dict.fromkeys(symbols):
                sym = str(raw).strip()
                if sym in universe:
                    stocks.append(sym)
                elif sym not in self.market_symbols:  # those are delivered in `market`
                    skipped[sym] = _NOT_IN_UNIVERSE
        wanted = list(dict.fromkeys([*stocks, *self.market_symbols]))
        frames, failed = self._fetch_all(wanted, window)
        skipped.update(failed)
        prices = [frames[s] for s in stocks if s in frames]
        market = [frames[s] for s in self.market_symbols if s in frames]
        if skipped:
            shown = dict(list(skipped.items())[:20])
            log.warning("yfinance: %d symbol(s) skipped, e.g. %s", len(skipped), shown)
        return MarketData(
            prices=_combine(prices),
            market=_combine(market),
            universe=universe,
            source=self.name,
            skipped=skipped,
        )

    def universe(self) -> Universe:
        """The constituents file when configured, otherwise the S&P 500 list page."""
        data = self.settings.data
        if data.constituents_path is not None:
            return Universe.load(
                data.constituents_path, data.membership_path, self.settings.universe
            )
        members = fetch_sp500_constituents(session=self._session)
        return Universe.from_frames(members, self.settings.universe)

    # ---- fetching -------------------------------------------------------------------------
    def _fetch_all(
        self, symbols: list[str], window: _Window
    ) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
        frames: dict[str, pd.DataFrame] = {}
        to_fetch: list[str] = []
        for sym in symbols:
            cached = self._cache_read(sym, window)
            if cached is None:
                to_fetch.append(sym)
            else:
                frames[sym] = cached
        if len(to_fetch) < len(symbols):
            log.info("yfinance: %d symbol(s) from cache", len(symbols) - len(to_fetch))

        skipped: dict[str, str] = {}
        answered = False  # Yahoo answered since the load began or the last unreachable give-up
        size = self.cfg.batch_size
        for i in range(0, len(to_fetch), size):
            batch = to_fetch[i : i + size]
            got = self._download_batch(batch, window)
            answered = answered or bool(got)
            for sym in batch:
                frame = got.get(sym)
                if frame is None:
                    frame, reason, error = self._retry_single(sym, window)
                    if error is not None and _is_unreachable(error):
                        if not answered:
                            raise SourceError(
                                _unreachable_message(sym, error, self.cfg.max_retries)
                            )
                        answered = False
                    else:
                        answered = True
                    if frame is None:
                        skipped[sym] = reason
                        continue
                self._cache_write(sym, frame, window)
                frames[sym] = frame
        return frames, skipped

    def _download_batch(self, batch: list[str], window: _Window) -> dict[str, pd.DataFrame]:
        """One ``yf.download`` call; returns the symbols that came back with rows."""
        import yfinance as yf

        self._limiter.wait()
        _forget_yfinance_responses()
        try:
            with _yfinance_calls(raise_errors=False):
                data = yf.download(
                    batch,
                    interval="1d",
                    group_by="ticker",
                    auto_adjust=True,
                    actions=False,
                    repair=False,
                    keepna=False,
                    threads=False,
                    progress=False,
                    ignore_tz=True,
                    multi_level_index=True,
                    timeout=REQUEST_TIMEOUT_S,
                    session=self._yf_session(),
                    **window.yf_kwargs(),
                )
        except Exception as exc:  # the per-symbol path below retries and explains
            log.warning("yfinance: batch of %d failed (%s); trying one by one", len(batch), exc)
            return {}
        out: dict[str, pd.DataFrame] = {}
        if data is None or data.empty or not isinstance(data.columns, pd.MultiIndex):
            return out
        present = set(data.columns.get_level_values(0))
        for sym in batch:
            key = sym.upper()
            if key in present:
                frame = _to_long(sym, data[key])
                if not frame.empty:
                    out[sym] = frame
        return out

    def _retry_single(
        self, sym: str, window: _Window
    ) -> tuple[pd.DataFrame | None, str, Exception | None]:
        """Retry one symbol with exponential backoff. Returns its frame, or why there is none
        and, when it gave up on errors rather than on Yahoo's answer, the last error."""
        retries = self.cfg.max_retries
        if retries == 0:
            return None, "no data in the batch download and retries are off (max_retries=0)", None
        last: Exception | None = None
        for attempt in range(1, retries + 1):
            back_off(attempt, self.cfg.backoff_s, self._sleep)  # the batch was the first try
            self._limiter.wait()
            try:
                frame = self._history(sym, window)
            except _PermanentError as exc:
                return None, f"unknown or delisted: {exc}", None
            except Exception as exc:
                last = exc
                log.info(
                    "yfinance: %s attempt %d/%d failed: %s: %s",
                    sym,
                    attempt,
                    retries,
                    type(exc).__name__,
                    exc,
                )
                continue
            if frame.empty:
                return None, "unknown or delisted: Yahoo returned no price rows in the range", None
            return frame, "", None
        reason = f"gave up after {retries} retries; last error: {type(last).__name__}: {last}"
        return None, reason, last

    def _history(self, sym: str, window: _Window) -> pd.DataFrame:
        """One symbol through ``Ticker.history`` with exceptions raised, classified."""
        import yfinance as yf
        from yfinance.exceptions import YFInvalidPeriodError, YFTickerMissingError

        _forget_yfinance_responses()
        try:
            with _yfinance_calls(raise_errors=True):
                raw = yf.Ticker(sym, session=self._yf_session()).history(
                    interval="1d",
                    auto_adjust=True,
                    actions=False,
                    repair=False,
                    keepna=False,
                    timeout=REQUEST_TIMEOUT_S,
                    **window.yf_kwargs(),
                )
        except (YFTickerMissingError, YFInvalidPeriodError) as exc:
            raise _PermanentError(str(exc).removeprefix(f"${sym.upper()}: ")) from exc
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
                where = urlsplit(str(getattr(response, "url", ""))).path
                raise _PermanentError(f"Yahoo answered HTTP {status} for {where}") from exc
            raise
        return _to_long(sym, raw)

    def _yf_session(self) -> Any:
        if self._session is None:
            from curl_cffi import requests as curl_requests

            self._session = curl_requests.Session(impersonate="chrome")
        return self._session

    # ---- cache ----------------------------------------------------------------------------
    def _cache_path(self, sym: str) -> Path:
        return Path(self.cfg.cache_dir) / f"{quote(sym, safe='')}.parquet"

    def _cache_read(self, sym: str, window: _Window) -> pd.DataFrame | None:
        """The cached frame when it is younger than the TTL and covers the window."""
        path = self._cache_path(sym)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[_CACHE_META_KEY])
        except Exception as exc:
            log.warning("yfinance: ignoring unreadable cache file %s: %s", path, exc)
            return None
        age_s = self._clock() - float(meta["fetched_at"])
        if not 0 <= age_s < self.cfg.cache_ttl_hours * 3600:
            return None
        start = pd.Timestamp(meta["start"]) if meta["start"] else None
        if not window.covered_by(start, pd.Timestamp(meta["end"])):
            return None
        frame = filter_frame(table.to_pandas(), None, window.start, window.end)
        return frame if not frame.empty else None

    def _cache_write(self, sym: str, frame: pd.DataFrame, window: _Window) -> None:
        meta = {
            "symbol": sym,
            "fetched_at": self._clock(),
            "start": window.start.strftime("%Y-%m-%d") if window.start is not None else None,
            "end": window.end.strftime("%Y-%m-%d"),
        }
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _CACHE_META_KEY: json.dumps(meta).encode()}
        )
        with atomic_path(self._cache_path(sym)) as tmp:
            pq.write_table(table, tmp)

    # ---- helpers --------------------------------------------------------------------------
    def _window(self, start: DateLike, end: DateLike) -> _Window:
        today = pd.Timestamp(self._clock(), unit="s").normalize()
        s, e = date_range(start, today if end is None else end)
        assert e is not None
        return _Window(s, e)


def _to_long(sym: str, frame: pd.DataFrame) -> pd.DataFrame:
    """yfinance's wide frame (Date index; Open..Volume) -> our long rows for one symbol."""
    cols = {c: str(c).lower() for c in frame.columns}
    wide = frame.rename(columns=cols)
    missing = [c for c in (*PRICE_FIELDS, "volume") if c not in wide.columns]
    if missing:
        raise SourceError(f"yfinance frame for {sym} lacks column(s) {missing}")
    wide = wide.dropna(subset=list(PRICE_FIELDS), how="all")
    index = pd.DatetimeIndex(wide.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    out = pd.DataFrame(
        {
            "symbol": sym,
            "date": index.normalize().astype("datetime64[ns]"),
            **{c: wide[c].to_numpy(dtype="float64") for c in (*PRICE_FIELDS, "volume")},
        }
    )
    out = out.drop_duplicates("date", keep="last")
    return canonical_order(out)[list(PRICE_COLUMNS)]


def _combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return empty_prices()
    return canonical_order(pd.concat(frames, ignore_index=True))


def _forget_yfinance_responses() -> None:
    """yfinance memoizes GET responses for past date ranges in-process (``YfData.cache_get``,
    an lru_cache). Clear it so a retry or a refetch after the TTL really asks Yahoo instead of
    re-reading the response that just failed or expired; our own cache does the caching."""
    from yfinance.data import YfData

    clear = getattr(YfData.cache_get, "cache_clear", None)
    if callable(clear):
        clear()


@contextmanager
def _yfinance_calls(raise_errors: bool) -> Iterator[None]:
    """Mute yfinance's own logger, which reports every failure per ticker (a network error
    as "possibly delisted", for one): this source reports what happened itself, in
    ``skipped`` and its errors. ``raise_errors`` lets yfinance raise instead of returning an
    empty frame (its default), so a transient failure can be told from 'no data'."""
    import yfinance as yf

    logger = logging.getLogger("yfinance")
    hide, disabled = yf.config.debug.hide_exceptions, logger.disabled
    yf.config.debug.hide_exceptions = hide and not raise_errors
    logger.disabled = True
    try:
        yield
    finally:
        yf.config.debug.hide_exceptions, logger.disabled = hide, disabled


def _is_unreachable(exc: BaseException) -> bool:
    """A failure to get any answer at all (DNS, refused or reset connection, proxy, TLS,
    connect timeout), as opposed to an answer Yahoo gave; the requests and curl_cffi session
    types raise classes of their own."""
    import requests
    from curl_cffi.requests import exceptions as curl

    kinds = (requests.exceptions.ConnectionError, curl.ConnectionError, curl.ProxyError)
    return isinstance(exc, kinds)


def _unreachable_message(sym: str, exc: BaseException, retries: int) -> str:
    """One line: which host, why (the OS's or curl's words, not the whole chain), what now."""
    url = getattr(getattr(exc, "request", None), "url", None)
    host = urlsplit(str(url)).netloc if url else "Yahoo Finance"
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^\"')\]]+)|curl: \(\d+\) (.+?)\.?(?: See https|$)", text)
    detail = next((g for g in found.groups() if g), "") if found else text[:120]
    return (
        f"yfinance: cannot reach {host} ({type(exc).__name__}: {detail.strip()}); {sym} failed "
        f"its {retries} retries with no answer from Yahoo, so the load stops. Check the network "
        "or proxy, or ingest from files: --source parquet PATH"
    )
