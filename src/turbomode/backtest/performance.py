"""Backtest metrics, each beside SPY buy-and-hold over the same days.

Definitions (daily bars; ``p`` = ``periods_per_year``, 252):

* daily return r_t = equity_t / equity_{t−1} − 1, the first day against the initial cash;
* **Sharpe** = mean(r) / std(r, ddof=1) × √p, with a risk-free rate of 0 (excess returns over
  cash would need a rate series the data does not have; the benchmark is treated the same);
* **Sortino** = mean(r) / √(mean(min(r, 0)²)) × √p — downside deviation against 0 over *all*
  days, so quiet days count as no risk rather than being dropped;
* **max drawdown** = min over t of equity_t / max(initial, equity_≤t) − 1 (≤ 0);
* **total return**, **CAGR** = (1 + total)^(p / days) − 1, **volatility** = std(r) × √p;
* **trades**, **win rate** (net P&L > 0), **average trade return** (net of costs, on the
  entry notional at the fill), **profit factor** = Σ winning net P&L / |Σ losing net P&L|
  (∞ without a loss, undefined without trades);
* **exposure** = share of days with any position held at some point of the day; **average
  gross exposure** = mean of held value / equity (held value: the book at the close plus what
  was sold that day at its fills, so a one-day trade counts); **turnover** = Σ traded notional
  (entries and exits) / mean equity over the run, and per year × p / days.

JSON cannot hold NaN or ∞, so :func:`summarize` writes them as null.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from turbomode.backtest.engine import BacktestResult
from turbomode.backtest.settings import BacktestSettings
from turbomode.data.schema import require_columns
from turbomode.errors import SchemaError


def daily_returns(equity: pd.Series, initial: float) -> pd.Series:
    """r_t = equity_t / equity_{t−1} − 1, the first day measured against ``initial``."""
    prev = equity.shift(1)
    prev.iloc[0] = initial
    return equity / prev - 1.0


def sharpe(returns: pd.Series, periods: int = 252) -> float:
    """Annualized Sharpe with rf = 0; NaN with fewer than two days or no variation."""
    r = returns.dropna().to_numpy(dtype=float)
    if len(r) < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd * math.sqrt(periods) if sd > 0 else math.nan


def sortino(returns: pd.Series, periods: int = 252) -> float:
    """Annualized Sortino against 0; ∞ when no day lost and the mean is positive."""
    r = returns.dropna().to_numpy(dtype=float)
    if len(r) == 0:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    mean = float(np.mean(r))
    if downside == 0.0:
        return math.inf if mean > 0 else math.nan
    return mean / downside * math.sqrt(periods)


def drawdown(equity: pd.Series, initial: float) -> pd.Series:
    """equity / running peak − 1, the initial capital being the first peak."""
    eq = equity.to_numpy(dtype=float)
    peak = np.maximum(np.maximum.accumulate(eq), initial)
    return pd.Series(eq / peak - 1.0, index=equity.index)


def max_drawdown(equity: pd.Series, initial: float) -> float:
    """The deepest fall from a running peak (≤ 0)."""
    return float(drawdown(equity, initial).min()) if len(equity) else math.nan


def profit_factor(pnl: pd.Series) -> float:
    """Σ gains / |Σ losses|; ∞ without a loss (and some gain), NaN without trades."""
    x = pnl.dropna().to_numpy(dtype=float)
    if len(x) == 0:
        return math.nan
    gains = float(x[x > 0].sum())
    losses = float(-x[x < 0].sum())
    if losses == 0.0:
        return math.inf if gains > 0 else math.nan
    return gains / losses


def equity_metrics(equity: pd.Series, initial: float, periods: int = 252) -> dict[str, float]:
    """Return and risk of an equity curve (module docstring)."""
    r = daily_returns(equity, initial)
    days = len(equity)
    total = float(equity.iloc[-1] / initial - 1.0) if days else math.nan
    cagr = (1.0 + total) ** (periods / days) - 1.0 if days and total > -1.0 else math.nan
    vol = float(np.std(r.to_numpy(dtype=float), ddof=1)) * math.sqrt(periods) if days > 1 else 0.0
    return {
        "days": days,
        "final_equity": float(equity.iloc[-1]) if days else math.nan,
        "total_return": total,
        "cagr": cagr,
        "volatility": vol,
        "sharpe": sharpe(r, periods),
        "sortino": sortino(r, periods),
        "max_drawdown": max_drawdown(equity, initial),
    }


def trade_metrics(trades: pd.DataFrame) -> dict[str, float]:
    """Count, win rate, average net return and profit factor of closed trades."""
    n = len(trades)
    if n == 0:
        return {
            "trades": 0.0,
            "win_rate": math.nan,
            "avg_return": math.nan,
            "avg_win": math.nan,
            "avg_loss": math.nan,
            "profit_factor": math.nan,
            "net_pnl": 0.0,
            "commission": 0.0,
            "slippage_cost": 0.0,
            "avg_bars_held": math.nan,
        }
    ret = trades["net_return"].astype(float)
    pnl = trades["net_pnl"].astype(float)
    wins = ret[pnl > 0]
    losses = ret[pnl <= 0]
    return {
        "trades": float(n),
        "win_rate": float((pnl > 0).mean()),
        "avg_return": float(ret.mean()),
        "avg_win": float(wins.mean()) if len(wins) else math.nan,
        "avg_loss": float(losses.mean()) if len(losses) else math.nan,
        "profit_factor": profit_factor(pnl),
        "net_pnl": float(pnl.sum()),
        "commission": float(trades["commission"].sum()),
        "slippage_cost": float(trades["slippage_cost"].sum()),
        "avg_bars_held": float(trades["bars_held"].mean()),
    }


def exposure_metrics(daily: pd.DataFrame, periods: int = 252) -> dict[str, float]:
    """Exposure, average gross exposure and turnover from the engine's daily frame."""
    days = len(daily)
    if days == 0:
        return {"exposure": math.nan, "avg_gross_exposure": math.nan, "turnover": math.nan}
    held = daily["held_value"].astype(float)
    equity = daily["equity"].astype(float)
    turnover = float(daily["traded_notional"].sum() / equity.mean())
    return {
        "exposure": float((held > 0).mean()),
        "avg_gross_exposure": float((held / equity).mean()),
        "turnover": turnover,
        "annual_turnover": turnover * periods / days,
    }


def _benchmark_bars(bars: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """date-indexed open/close of the benchmark; ``adj_close`` (market.parquet) rebases both so
    dividends count, as they do in the adjusted stock prices."""
    b = bars
    if "symbol" in b.columns:
        b = b[b["symbol"] == symbol]
        if b.empty:
            raise SchemaError(f"benchmark: no rows for {symbol!r}")
    require_columns(b, ["date", "open", "close"], "benchmark bars")
    out = pd.DataFrame(
        {"open": b["open"].astype(float).to_numpy(), "close": b["close"].astype(float).to_numpy()},
        index=pd.to_datetime(b["date"]).dt.normalize().to_numpy(),
    )
    if "adj_close" in b.columns:
        factor = b["adj_close"].astype(float).to_numpy() / out["close"].to_numpy()
        out["open"] = out["open"] * factor
        out["close"] = out["close"] * factor
    return out.sort_index()


def buy_and_hold(
    bars: pd.DataFrame, dates: pd.Index, settings: BacktestSettings | None = None
) -> pd.DataFrame:
    """The benchmark over the strategy's days: all the cash into ``settings.benchmark_symbol``
    at the first day's open with the same slippage and commission as any entry (whole shares
    when the strategy uses them), held to the end, marked at each close; the leftover cash
    stays cash. Returns a daily frame shaped like :attr:`BacktestResult.daily`."""
    cfg = settings or BacktestSettings()
    b = _benchmark_bars(bars, cfg.benchmark_symbol)
    idx = pd.DatetimeIndex(dates)
    b = b.reindex(idx)
    if not np.isfinite(b["open"].iloc[0]):
        raise SchemaError(f"benchmark: no {cfg.benchmark_symbol} bar on {idx[0].date()}")
    closes = b["close"].ffill()
    fill = float(b["open"].iloc[0]) * (1.0 + cfg.slippage_bps * 1e-4)
    per_share = fill * (1.0 + cfg.commission_bps * 1e-4) + cfg.commission_per_share
    shares = max(cfg.initial_cash - cfg.min_commission, 0.0) / per_share
    if cfg.whole_shares:
        shares = math.floor(shares + 1e-9)

    def fee(q: float) -> float:
        fee_ = cfg.commission_per_share * q + cfg.commission_bps * 1e-4 * q * fill
        return max(fee_, cfg.min_commission)

    while cfg.whole_shares and shares > 0 and shares * fill + fee(shares) > cfg.initial_cash:
        shares -= 1
    commission = fee(shares)
    cash = cfg.initial_cash - shares * fill - commission
    value = shares * closes
    equity = cash + value
    out = pd.DataFrame(
        {
            "cash": cash,
            "long_value": value,
            "short_value": 0.0,
            "equity": equity,
            "n_positions": 1,
            "gross_value": value,
            "held_value": value,
            "traded_notional": 0.0,
            "commission": 0.0,
        },
        index=idx,
    )
    out.loc[out.index[0], "traded_notional"] = shares * fill
    out.loc[out.index[0], "commission"] = commission
    out["return"] = daily_returns(out["equity"], cfg.initial_cash)
    out.index.name = "date"
    return out


def by_group(trades: pd.DataFrame, column: str) -> pd.DataFrame:
    """:func:`trade_metrics` per value of ``column`` (sector, regime, tier, side)."""
    if len(trades) == 0 or column not in trades or trades[column].isna().all():
        return pd.DataFrame()
    rows = []
    for key, group in trades.groupby(column, sort=True):
        m = trade_metrics(group)
        rows.append({column: key, **m})
    return pd.DataFrame(rows)


def regime_days(daily: pd.DataFrame, periods: int = 252) -> pd.DataFrame:
    """Per regime label of the days: days, mean daily return, Sharpe, compounded return and
    exposure of the days in that regime (the days need not be consecutive)."""
    if "regime" not in daily or daily["regime"].isna().all():
        return pd.DataFrame()
    rows = []
    for key, group in daily.groupby("regime", sort=True):
        r = group["return"].astype(float)
        rows.append(
            {
                "regime": key,
                "days": len(group),
                "mean_return": float(r.mean()),
                "compounded_return": float(np.prod(1.0 + r.to_numpy(dtype=float)) - 1.0),
                "sharpe": sharpe(r, periods),
                "exposure": float((group["held_value"] > 0).mean()),
            }
        )
    return pd.DataFrame(rows)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in frame.to_dict(orient="records")]


_TICKERS = re.compile(r"\((?:[A-Z][A-Z0-9.\-]*)(?:, [A-Z][A-Z0-9.\-]*)*\)")
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:\.\.[-+]?\d[\d,]*(?:\.\d+)?)?")


def skip_kind(reason: str) -> str:
    """A skip reason without its symbols and numbers, so the summary counts kinds of skips (the
    per-row reason stays in ``BacktestResult.skipped``): "exit rules: AES: open 14.86 outside
    the entry range 13.97..14.83; entry skipped" → "exit rules: open … outside the entry range
    …; entry skipped"; "portfolio: size 0.31% below the 2.00% minimum" → "portfolio: size …%
    below the …% minimum"."""
    for prefix in ("exit rules: ", "portfolio: "):
        if reason.startswith(prefix):
            rest = reason[len(prefix) :]
            symbol, colon, detail = rest.partition(": ")
            text = detail if colon and " " not in symbol else rest
            text = _TICKERS.sub("(…)", text)
            return prefix + _NUMBER.sub("…", text)
    return reason


def summarize(result: BacktestResult, benchmark: pd.DataFrame | None = None) -> dict[str, Any]:
    """The headline metrics, beside buy-and-hold of ``benchmark`` (a long frame with a
    ``symbol`` column, e.g. market.parquet, or one symbol's date/open/close) when given; the
    by-sector and by-regime tables; skip counts by reason. JSON-safe (NaN/∞ → null)."""
    cfg = result.settings
    p = cfg.periods_per_year
    daily = result.daily
    strategy = {
        **equity_metrics(daily["equity"], cfg.initial_cash, p),
        **trade_metrics(result.trades),
        **exposure_metrics(daily, p),
    }
    bench: dict[str, Any] | None = None
    if benchmark is not None:
        bh = buy_and_hold(benchmark, daily.index, cfg)
        bench = {
            "symbol": cfg.benchmark_symbol,
            **equity_metrics(bh["equity"], cfg.initial_cash, p),
            **exposure_metrics(bh, p),
        }
    trade_regimes = by_group(result.trades, "regime")
    skipped = result.skipped["reason"].map(skip_kind).value_counts().sort_index()
    return _clean(
        {
            "policy": result.policy,
            "period": {
                "start": daily.index[0].date().isoformat(),
                "end": daily.index[-1].date().isoformat(),
                "days": len(daily),
            },
            "strategy": strategy,
            "benchmark": bench,
            "by_sector": _records(by_group(result.trades, "sector")),
            "by_regime": {
                "trades": _records(trade_regimes),
                "days": _records(regime_days(daily, p)),
            },
            "skipped": {str(k): int(v) for k, v in skipped.items()},
            "repaired_bars": result.repaired_bars,
            "settings": cfg.model_dump(),
        }
    )
