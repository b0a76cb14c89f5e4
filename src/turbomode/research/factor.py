"""Factor measures for any score: rank IC, IC decay, decile returns, the long/short book.

Everything here is a pure function over long frames (``symbol``, ``date`` plus named
columns, any row order). The work is done on dates × symbols numpy grids so that 500
symbols × 18 months take well under a second per measure: the only Python loops are over
horizons, buckets or sectors, never over symbols or dates.

Timing convention (the platform's, see :mod:`turbomode.labels`): a score is known at the
close of t, so the earliest trade is the open of t+1. ``ret_open_{h}`` is the label's return
(``close[t+h] / open[t+1] − 1``); ``ret_close_{h}`` starts from the next close and so leaves
out the overnight gap that a close-to-close measure would wrongly credit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from turbomode.errors import SchemaError

MIN_IC_ROWS = 10  # a daily IC over fewer names is noise
MIN_GROUP_ROWS = 3  # a group ranks nothing with fewer names
MIN_BOOK_ROWS = 2  # a group (or a day) needs a pair to hold a long and a short
TRADING_DAYS = 252

__all__ = [
    "daily_ic",
    "decile_returns",
    "forward_returns",
    "ic_by_month",
    "ic_decay",
    "ic_summary",
    "long_short",
    "long_short_weights",
    "ls_summary",
    "sector_ic",
]


# --------------------------------------------------------------------------- helpers


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {', '.join(missing)}")


def _floats(series: pd.Series) -> np.ndarray:
    """A float64 array with NaN for missing and non-finite values (nullable dtypes included)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values[~np.isfinite(values)] = np.nan
    return values


def _grid(
    frame: pd.DataFrame, columns: Sequence[str]
) -> tuple[pd.DatetimeIndex, pd.Index, dict[str, np.ndarray]]:
    """Pivot long columns onto one dates × symbols grid (NaN where a pair has no row)."""
    _require(frame, ["symbol", "date", *columns], "frame")
    dcode, dates = pd.factorize(pd.to_datetime(frame["date"]).to_numpy(), sort=True)
    scode, symbols = pd.factorize(frame["symbol"].to_numpy(), sort=True)
    key = dcode.astype(np.int64) * max(len(symbols), 1) + scode
    if len(key) and np.bincount(key).max() > 1:
        raise SchemaError("frame has duplicate (symbol, date) rows")
    grids: dict[str, np.ndarray] = {}
    for col in columns:
        grid = np.full((len(dates), len(symbols)), np.nan)
        grid[dcode, scode] = _floats(frame[col])
        grids[col] = grid
    return (
        pd.DatetimeIndex(dates, name="date"),
        pd.Index(symbols, name="symbol"),
        grids,
    )


def _row_rank(values: np.ndarray) -> np.ndarray:
    """Average ranks (1..m) along each row, NaN kept as NaN (ties as scipy's spearmanr)."""
    return pd.DataFrame(values).rank(axis=1, method="average").to_numpy()


def _row_pearson(x: np.ndarray, y: np.ndarray, min_obs: int) -> np.ndarray:
    """Pearson correlation per row over the columns where both are finite."""
    mask = np.isfinite(x) & np.isfinite(y)
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(mask, x, 0.0).sum(axis=1) / n
        my = np.where(mask, y, 0.0).sum(axis=1) / n
        dx = np.where(mask, x - mx[:, None], 0.0)
        dy = np.where(mask, y - my[:, None], 0.0)
        vxy = (dx * dx).sum(axis=1) * (dy * dy).sum(axis=1)
        r = (dx * dy).sum(axis=1) / np.sqrt(vxy)
    r[(n < min_obs) | ~(vxy > 0)] = np.nan
    return r


def _grid_ic(
    x: np.ndarray, y: np.ndarray, min_obs: int, rx: np.ndarray | None = None
) -> np.ndarray:
    """Spearman IC per row of two dates × symbols grids, over the pairs both finite.

    ``rx`` (the ranks of x over its own finite values) may be passed in when x is measured
    against several y; only the rows where y is missing for some finite x are re-ranked.
    """
    x_ok = np.isfinite(x)
    mask = x_ok & np.isfinite(y)
    if rx is None:
        rx = _row_rank(np.where(x_ok, x, np.nan))
    stale = (x_ok & ~mask).any(axis=1)
    if stale.any():
        rx = rx.copy()
        rx[stale] = _row_rank(np.where(mask[stale], x[stale], np.nan))
    rx = np.where(mask, rx, np.nan)
    ry = _row_rank(np.where(mask, y, np.nan))
    return _row_pearson(rx, ry, min_obs)


def _sorted_codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order by (symbol, date) and the symbol code of each sorted row; rejects duplicates."""
    scode, _ = pd.factorize(frame["symbol"].to_numpy(), sort=True)
    dates = pd.to_datetime(frame["date"]).to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = np.lexsort((dates, scode))
    sc, sd = scode[order], dates[order]
    if len(sc) > 1 and np.any((sc[1:] == sc[:-1]) & (sd[1:] == sd[:-1])):
        raise SchemaError("prices have duplicate (symbol, date) rows")
    return order, sc


def _lead(values: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """``values`` k bars later (k < 0: earlier) within the same symbol; rows sorted by
    (symbol, date). Shifting by the symbol's own bars means a gap in one symbol's history
    never borrows another's price."""
    n = len(values)
    idx = np.arange(n) + k
    ok = (idx >= 0) & (idx < n)
    ok[ok] = codes[idx[ok]] == codes[ok]
    out = np.full(n, np.nan)
    out[ok] = values[idx[ok]]
    return out


def _buckets(ranks: np.ndarray, counts: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Quantile bucket 1..n from within-row ranks 1..m (0 where unranked or m < n); ``n``
    may vary by row."""
    n_col = np.broadcast_to(np.asarray(n), counts.shape)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.floor((ranks - 1.0) * n_col / counts[:, None]) + 1.0
    b[~np.isfinite(b) | (counts[:, None] < n_col) | (n_col < 1)] = 0
    return b.astype(np.int64)


def _summ(values: np.ndarray) -> tuple[float, float, float, int]:
    """Mean, std, t-statistic of the mean, count over the finite values."""
    v = values[np.isfinite(values)]
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    t = mean / (std / np.sqrt(n)) if n > 1 and std > 0 else float("nan")
    return mean, std, float(t), n


# --------------------------------------------------------------------------- returns


def forward_returns(prices: pd.DataFrame, horizons: Sequence[int] = range(1, 11)) -> pd.DataFrame:
    """Forward returns per (symbol, date) for each horizon h, on both entry bases.

    ``ret_open_{h}`` = close[t+h] / open[t+1] − 1: entry at the next open, what the platform
    trades and what the labels use. ``ret_close_{h}`` = close[t+1+h] / close[t+1] − 1: from
    the next close, which drops the overnight gap (the usual academic convention shifted by a
    bar so it never overlaps the open-basis entry). NaN where the window runs past the
    symbol's data. Rows come back sorted by symbol, date.
    """
    _require(prices, ["symbol", "date", "open", "close"], "prices")
    order, codes = _sorted_codes(prices)
    opens = _floats(prices["open"])[order]
    closes = _floats(prices["close"])[order]
    out = pd.DataFrame(
        {
            "symbol": prices["symbol"].to_numpy()[order],
            "date": pd.to_datetime(prices["date"]).to_numpy()[order],
        }
    )
    open_next = _lead(opens, codes, 1)
    close_next = _lead(closes, codes, 1)
    cols: dict[str, np.ndarray] = {}
    for h in horizons:
        if h < 1:
            raise ValueError(f"horizons must be ≥ 1, got {h}")
        cols[f"ret_open_{h}"] = _lead(closes, codes, h) / open_next - 1.0
    for h in horizons:
        cols[f"ret_close_{h}"] = _lead(closes, codes, h + 1) / close_next - 1.0
    return pd.concat([out, pd.DataFrame(cols)], axis=1)


def _open_to_open(prices_or_returns: pd.DataFrame) -> pd.DataFrame:
    """symbol, date, ``ret_oo`` = open[t+2] / open[t+1] − 1: a book decided at the close of t,
    traded at the next open and held one day. A frame that already has ``ret_oo`` passes."""
    if "ret_oo" in prices_or_returns.columns:
        _require(prices_or_returns, ["symbol", "date"], "returns")
        out = prices_or_returns[["symbol", "date", "ret_oo"]].copy()
        out["date"] = pd.to_datetime(out["date"])
        return out
    _require(prices_or_returns, ["symbol", "date", "open"], "prices")
    order, codes = _sorted_codes(prices_or_returns)
    opens = _floats(prices_or_returns["open"])[order]
    return pd.DataFrame(
        {
            "symbol": prices_or_returns["symbol"].to_numpy()[order],
            "date": pd.to_datetime(prices_or_returns["date"]).to_numpy()[order],
            "ret_oo": _lead(opens, codes, 2) / _lead(opens, codes, 1) - 1.0,
        }
    )


# --------------------------------------------------------------------------- IC


def daily_ic(
    frame: pd.DataFrame,
    score: str,
    ret: str,
    group: str | None = None,
    min_obs: int = MIN_IC_ROWS,
) -> pd.Series:
    """Daily cross-sectional Spearman IC of ``score`` against ``ret`` (index: every date).

    Only rows where both are finite count; a date with fewer than ``min_obs`` of them is NaN.
    With ``group`` (e.g. "sector") it is the within-group IC: each variable becomes its
    percentile rank inside its (date, group), centred on the group's mean rank, and the
    Pearson correlation of the centred ranks is taken over the whole date. A score that only
    shifts whole sectors up or down therefore scores 0 — it measures ranking within sectors,
    which is what a per-sector model does. Groups with fewer than 3 valid rows are dropped.
    """
    if group is None:
        dates, _, g = _grid(frame, [score, ret])
        return pd.Series(_grid_ic(g[score], g[ret], min_obs), index=dates, name="ic")

    _require(frame, ["symbol", "date", score, ret, group], "frame")
    all_dates = pd.DatetimeIndex(np.unique(pd.to_datetime(frame["date"]).to_numpy()), name="date")
    df = pd.DataFrame(
        {
            "date": pd.to_datetime(frame["date"]).to_numpy(),
            "g": frame[group].to_numpy(),
            "x": _floats(frame[score]),
            "y": _floats(frame[ret]),
        }
    )
    df = df[np.isfinite(df["x"]) & np.isfinite(df["y"]) & df["g"].notna()]
    keys = [df["date"], df["g"]]
    df = df[df.groupby(keys)["x"].transform("size") >= MIN_GROUP_ROWS]
    keys = [df["date"], df["g"]]
    by = df.groupby(keys)
    cx = by["x"].rank(pct=True)
    cy = by["y"].rank(pct=True)
    cx = cx - cx.groupby(keys).transform("mean")
    cy = cy - cy.groupby(keys).transform("mean")
    # Pearson per date; the centred ranks have mean 0 per group, hence per date.
    parts = pd.DataFrame({"date": df["date"], "xy": cx * cy, "xx": cx * cx, "yy": cy * cy})
    sums = parts.groupby("date").agg(
        n=("xy", "size"), xy=("xy", "sum"), xx=("xx", "sum"), yy=("yy", "sum")
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        ic: pd.Series = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    ic[(sums["n"] < min_obs) | ~(sums["xx"] * sums["yy"] > 0)] = np.nan
    return ic.reindex(all_dates).rename("ic")


def ic_summary(ic: pd.Series) -> dict[str, float]:
    """Mean, std, t-statistic (mean / (std/√n)), n_days, share of positive days, ICIR
    (mean/std, per day) over the days with a finite IC."""
    values = np.asarray(ic, dtype=float)
    mean, std, t, n = _summ(values)
    v = values[np.isfinite(values)]
    return {
        "mean": mean,
        "std": std,
        "t": t,
        "n_days": n,
        "pos_share": float((v > 0).mean()) if n else float("nan"),
        "icir": mean / std if n > 1 and std > 0 else float("nan"),
    }


def sector_ic(
    frame: pd.DataFrame,
    score: str,
    ret: str,
    sector: str = "sector",
    min_obs: int = MIN_IC_ROWS,
) -> pd.DataFrame:
    """Per sector: the daily Spearman IC over that sector's names alone, summarised.

    Index: sector; columns mean, std, t, n_days, pos_share, icir. Shows whether a pooled
    figure is carried by one or two sectors.
    """
    _require(frame, ["symbol", "date", score, ret, sector], "frame")
    rows = {}
    for name, sub in frame.groupby(sector, sort=True):
        rows[name] = ic_summary(daily_ic(sub, score, ret, min_obs=min_obs))
    columns = list(ic_summary(pd.Series(dtype=float)))
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    out.index.name = sector
    return out


def ic_decay(
    frame: pd.DataFrame,
    score: str,
    fwd: pd.DataFrame,
    horizons: Sequence[int] = range(1, 11),
    basis: str = "open",
    group: str | None = None,
) -> pd.DataFrame:
    """Mean IC, t and n_days of ``score`` against ``ret_{basis}_{h}`` for each horizon h.

    ``fwd`` is :func:`forward_returns` output. How fast the IC fades says how long a
    position can be held and how often the book must turn over.
    """
    if basis not in ("open", "close"):
        raise ValueError(f"basis must be 'open' or 'close', got {basis!r}")
    cols = [f"ret_{basis}_{h}" for h in horizons]
    _require(fwd, ["symbol", "date", *cols], "forward returns")
    left = frame[["symbol", "date", score, *([group] if group else [])]].copy()
    left["date"] = pd.to_datetime(left["date"])
    right = fwd[["symbol", "date", *cols]].copy()
    right["date"] = pd.to_datetime(right["date"])
    merged = left.merge(right, on=["symbol", "date"], how="left")
    rows = {}
    grids = None if group else _grid(merged, [score, *cols])[2]  # one pivot for all h
    rx = None if grids is None else _row_rank(grids[score])  # one ranking of the score too
    for h, col in zip(horizons, cols, strict=True):
        if grids is None:
            ic = daily_ic(merged, score, col, group=group)
        else:
            ic = pd.Series(_grid_ic(grids[score], grids[col], MIN_IC_ROWS, rx))
        s = ic_summary(ic)
        rows[h] = {"mean": s["mean"], "t": s["t"], "n_days": s["n_days"]}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "horizon"
    return out


def ic_by_month(ic: pd.Series) -> pd.DataFrame:
    """Monthly mean IC, its t and the number of days with an IC (index "YYYY-MM")."""
    v = ic.dropna()
    if v.empty:
        return pd.DataFrame(
            {"mean": pd.Series(dtype=float), "t": pd.Series(dtype=float), "n": pd.Series(dtype=int)}
        ).rename_axis("month")
    idx = pd.DatetimeIndex(v.index)
    g = v.groupby(idx.strftime("%Y-%m"))
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.size()})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["t"] = out["mean"] / (out["std"] / np.sqrt(out["n"]))
    out = out[["mean", "t", "n"]]
    out.index.name = "month"
    return out


# --------------------------------------------------------------------------- portfolios


def decile_returns(frame: pd.DataFrame, score: str, ret: str, n: int = 10) -> pd.DataFrame:
    """Mean ``ret`` per score bucket: bucketed within each date, averaged over dates.

    Each date ranks its rows with both values finite (average ranks) and puts rank r of m in
    bucket ⌊(r−1)·n/m⌋ + 1 (1 = lowest score); dates with fewer than n such rows are left
    out. Index: bucket 1..n; columns mean_ret (mean over dates of the bucket's daily mean),
    t, n_days, mean_names. A monotone profile is what a usable score looks like; a hump or
    a single tail says the IC comes from one end only.
    """
    _, _, g = _grid(frame, [score, ret])
    x, y = g[score], g[ret]
    mask = np.isfinite(x) & np.isfinite(y)
    ranks = _row_rank(np.where(mask, x, np.nan))
    b = _buckets(ranks, mask.sum(axis=1), n)
    rows = {}
    for k in range(1, n + 1):
        inside = b == k
        cnt = inside.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            daily = np.where(inside, y, 0.0).sum(axis=1) / cnt
        daily[cnt == 0] = np.nan
        mean, _, t, days = _summ(daily)
        rows[k] = {
            "mean_ret": mean,
            "t": t,
            "n_days": days,
            "mean_names": float(cnt[cnt > 0].mean()) if days else float("nan"),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "bucket"
    return out


def _book(s: np.ndarray, codes: np.ndarray | None, n: int, smooth: int) -> np.ndarray:
    """Weights on a dates × symbols grid: top bucket long, bottom short, per group if codes."""
    raw = s
    if smooth > 1:
        s = pd.DataFrame(s).rolling(smooth, min_periods=1).mean().to_numpy()
        s[~np.isfinite(raw)] = np.nan  # no score today: not tradable today
    valid = np.isfinite(s)
    if codes is None:
        members = [valid]
    else:
        members = [valid & (codes == k) for k in np.unique(codes[np.isfinite(codes)])]
    counts = [m.sum(axis=1) for m in members]
    eligible = sum((c * (c >= MIN_BOOK_ROWS) for c in counts), np.zeros(len(s), dtype=np.int64))
    w = np.zeros_like(s)
    for m, c in zip(members, counts, strict=True):
        k = np.minimum(n, c)  # a group with fewer than n names holds its single top and bottom
        b = _buckets(_row_rank(np.where(m, s, np.nan)), c, k)
        top, bottom = b == k[:, None], b == 1
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(c >= MIN_BOOK_ROWS, c / eligible, 0.0)
            w += np.where(top, (share / top.sum(axis=1))[:, None], 0.0)
            w -= np.where(bottom, (share / bottom.sum(axis=1))[:, None], 0.0)
    return np.nan_to_num(w)


def _with_group_codes(frame: pd.DataFrame, cols: list[str], group: str | None) -> pd.DataFrame:
    out = frame[cols].copy()
    out["date"] = pd.to_datetime(out["date"])
    if group:
        codes = pd.factorize(out[group])[0].astype(float)
        codes[codes < 0] = np.nan
        out["_g"] = codes
    return out


def long_short_weights(
    frame: pd.DataFrame,
    score: str,
    n: int = 10,
    smooth: int = 1,
    group: str | None = None,
) -> pd.DataFrame:
    """The book :func:`long_short` holds after the close of each date (dates × symbols)."""
    cols = ["symbol", "date", score, *([group] if group else [])]
    _require(frame, cols, "frame")
    df = _with_group_codes(frame, cols, group)
    dates, symbols, g = _grid(df, [score, *(["_g"] if group else [])])
    return pd.DataFrame(_book(g[score], g.get("_g"), n, smooth), index=dates, columns=symbols)


def long_short(
    frame: pd.DataFrame,
    score: str,
    prices_or_returns: pd.DataFrame,
    n: int = 10,
    cost_bps: float = 10.0,
    smooth: int = 1,
    group: str | None = None,
) -> pd.DataFrame:
    """Daily top-minus-bottom bucket book: gross, turnover, cost, net (index: decision date).

    At the close of t the score (``smooth`` > 1: the mean of each symbol's last ``smooth``
    scores, which trades signal freshness for lower turnover) is bucketed as in
    :func:`decile_returns`; the book is +1/N_top on the top bucket and −1/N_bottom on the
    bottom one. With ``group`` the buckets are taken inside each group and each group's legs
    are weighted by its share of the names, so the book is neutral to the group (sector bets
    cancel). A group (or, pooled, a day) with 2 ≤ m < n names holds just its top and bottom
    name; with fewer it sits out. The book is bought at
    the open of t+1 and held to the open of t+2, so the day's return uses
    r = open[t+2] / open[t+1] − 1 (``prices_or_returns``: a prices frame with ``open``, or a
    frame with that return as ``ret_oo``). A held name without r (it stopped trading)
    contributes 0; dates where no name has r (the end of the data) are dropped.

    turnover = Σ|w_t − w_{t−1}| / 4: the one-way turnover of the two-sided book (gross 2), i.e.
    the share of its names replaced — swapping every name of both legs is 1.0, the first day's
    build from nothing 0.5 (entries only). cost = cost_bps / 1e4 × Σ|w_t − w_{t−1}| (every unit
    of notional traded pays the cost); net = gross − cost.
    Weights are reset to equal each day (drift between rebalances is ignored).
    """
    if n < 2:
        raise ValueError(f"n must be ≥ 2, got {n}")
    if smooth < 1:
        raise ValueError(f"smooth must be ≥ 1, got {smooth}")
    cols = ["symbol", "date", score, *([group] if group else [])]
    _require(frame, cols, "frame")
    left = _with_group_codes(frame, cols, group)
    merged = left.merge(_open_to_open(prices_or_returns), on=["symbol", "date"], how="left")
    dates, _, g = _grid(merged, [score, "ret_oo", *(["_g"] if group else [])])
    w = _book(g[score], g.get("_g"), n, smooth)
    r = g["ret_oo"]
    dw = np.abs(np.diff(w, axis=0, prepend=0.0)).sum(axis=1)
    gross = np.where(np.isfinite(r), w * r, 0.0).sum(axis=1)
    cost = cost_bps / 1e4 * dw
    out = pd.DataFrame(
        {
            "gross": gross,
            "turnover": dw / 4.0,
            "cost": cost,
            "net": gross - cost,
            "n_long": (w > 0).sum(axis=1),
            "n_short": (w < 0).sum(axis=1),
        },
        index=dates,
    )
    return out[np.isfinite(r).any(axis=1)]


def ls_summary(df: pd.DataFrame) -> dict[str, float]:
    """Annualised mean, vol and Sharpe (√252) gross and net, mean daily turnover, compounded
    total return gross and net, and the net equity curve's max drawdown (≤ 0)."""
    out: dict[str, float] = {"n_days": len(df)}
    for kind in ("gross", "net"):
        v = df[kind].to_numpy(dtype=float)
        mean, std, _, _ = _summ(v)
        out[f"ann_mean_{kind}"] = mean * TRADING_DAYS
        out[f"ann_vol_{kind}"] = float(std * np.sqrt(TRADING_DAYS))
        out[f"sharpe_{kind}"] = (
            float(mean / std * np.sqrt(TRADING_DAYS)) if len(v) > 1 and std > 0 else float("nan")
        )
        out[f"total_return_{kind}"] = float(np.prod(1.0 + v) - 1.0) if len(v) else float("nan")
    out["mean_turnover"] = float(df["turnover"].mean()) if len(df) else float("nan")
    equity = np.cumprod(1.0 + df["net"].to_numpy(dtype=float))
    if len(equity):
        peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
        out["max_drawdown_net"] = float((equity / peak - 1.0).min())
    else:
        out["max_drawdown_net"] = float("nan")
    return out
