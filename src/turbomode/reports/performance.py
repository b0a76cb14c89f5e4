"""The figures of the dashboard's performance pages, read from the signals store.

* **Equity**: a paper wallet's daily marks beside the benchmark (SPY) bought and held over the
  same days with the wallet's own costs (:func:`turbomode.backtest.performance.buy_and_hold`),
  both with their drawdowns and headline metrics (the backtest's functions: one definition of
  drawdown, Sharpe, … for backtests and wallets alike), and the P&L of each calendar month
  (the month's last mark against the previous month's, the first against the initial cash).
* **Hit rate** of the resolved signal outcomes by horizon, sector and month of the call:
  ``correct`` is the outcome tracker's verdict, the mean return its ``side_return``.
* **Trade quality**: the wallet's closed trades, narrowed by what-if filters (minimum
  confidence, tier, regime, sector), with the win rate and mean net return of what remains
  (:func:`turbomode.backtest.performance.trade_metrics`). A trade's confidence is that of the
  scan's call it entered on (``signal_history``), whatever rule set sized it.

Charts are SVG drawn here, on the server: the page needs no chart library, fetches nothing
from elsewhere, and a test can read the same numbers from the JSON beside the picture.
Every function returns plain JSON-ready values (no NaN: ``None``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from turbomode.backtest.performance import buy_and_hold, drawdown, equity_metrics, trade_metrics
from turbomode.config import GICS_SECTORS, REGIMES, Tier
from turbomode.errors import SchemaError, TurboModeError
from turbomode.store import SignalStore, Wallet
from turbomode.wallet.day import wallet_settings

if TYPE_CHECKING:
    from turbomode.config import Settings

TIERS: tuple[str, ...] = tuple(t.value for t in Tier)
HIT_GROUPS: tuple[str, ...] = ("horizon", "sector", "month")
TRADE_COLUMNS = (
    "trade_id",
    "symbol",
    "side",
    "sector",
    "tier",
    "regime",
    "confidence",
    "entry_date",
    "exit_date",
    "exit_reason",
    "net_pnl",
    "net_return",
)


class PerformanceInputError(TurboModeError, ValueError):
    """A page asked for something the store cannot answer: an unknown wallet or filter value."""


class NoWalletError(PerformanceInputError, LookupError):
    """The store has no wallet of that name (or none at all)."""


def _num(x: Any) -> float | None:
    f = float(x)
    return f if math.isfinite(f) else None


def _day(x: Any) -> str | None:
    return None if x is None or pd.isna(x) else pd.Timestamp(x).date().isoformat()


def _wallet(store: SignalStore, name: str | None) -> Wallet:
    wallets = store.wallets()
    if not wallets:
        raise NoWalletError("no paper wallet yet: `turbomode wallet create paper --rules atr`")
    if name is None:
        return next((w for w in wallets if w.name == "paper"), wallets[0])
    for w in wallets:
        if w.name == name:
            return w
    raise NoWalletError(
        f"unknown wallet {name!r}; one of: {', '.join(sorted(w.name for w in wallets))}"
    )


def benchmark_bars(settings: Settings) -> pd.DataFrame | None:
    """The benchmark's rows of the clean store's market.parquet, or None without them."""
    path = settings.data.clean_dir / "market.parquet"
    if not path.exists():
        return None
    symbol = settings.backtest.benchmark_symbol
    frame = pq.read_table(path, filters=[("symbol", "==", symbol)]).to_pandas()
    return frame if len(frame) else None


# ---- equity ---------------------------------------------------------------------------------


def monthly_pnl(equity: pd.Series, initial: float) -> list[dict[str, Any]]:
    """Per calendar month: the last mark, its change from the month before (the first month
    from ``initial``) in money and as a return."""
    if equity.empty:
        return []
    last = equity.groupby(pd.DatetimeIndex(equity.index).to_period("M")).last()
    before = last.shift(1).fillna(initial)
    return [
        {
            "month": str(month),
            "end_equity": float(end),
            "pnl": float(end - base),
            "return": float(end / base - 1.0),
        }
        for month, end, base in zip(last.index, last.to_numpy(), before.to_numpy(), strict=True)
    ]


def equity_page(
    store: SignalStore,
    settings: Settings,
    wallet_name: str | None = None,
    benchmark: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """A wallet's equity curve and drawdown beside the benchmark's, their metrics, the P&L by
    month and the two charts. ``benchmark``: the benchmark's bars (:func:`benchmark_bars`);
    without them, or without a bar on the wallet's first day, the wallet stands alone and
    ``benchmark_note`` says why."""
    wallet = _wallet(store, wallet_name)
    marks = store.wallet_equity(wallet.name)
    dates = pd.DatetimeIndex(pd.to_datetime(marks["date"]))
    equity = pd.Series(marks["equity"].astype(float).to_numpy(), index=dates)
    initial = wallet.initial_cash
    symbol = settings.backtest.benchmark_symbol
    bench: pd.Series | None = None
    note = None
    if benchmark is None:
        note = f"no {symbol} bars in the clean store"
    elif len(dates):
        cfg = wallet_settings(wallet.rules, settings).model_copy(update={"initial_cash": initial})
        try:
            bench = buy_and_hold(benchmark, dates, cfg)["equity"]
        except SchemaError as exc:
            note = str(exc)
    dd = drawdown(equity, initial)
    bdd = drawdown(bench, initial) if bench is not None else None
    points = [
        {
            "date": _day(d),
            "equity": float(equity.iloc[i]),
            "drawdown": float(dd.iloc[i]),
            "benchmark": None if bench is None else _num(bench.iloc[i]),
            "benchmark_drawdown": None if bdd is None else _num(bdd.iloc[i]),
        }
        for i, d in enumerate(dates)
    ]
    series = {"wallet": equity}
    if bench is not None:
        series[f"{symbol} buy & hold"] = bench
    drawdowns = {"wallet": dd}
    if bdd is not None:
        drawdowns[f"{symbol} buy & hold"] = bdd
    metrics = {k: _num(v) for k, v in equity_metrics(equity, initial).items()} if len(dates) else {}
    bench_metrics = (
        {k: _num(v) for k, v in equity_metrics(bench, initial).items()}
        if bench is not None
        else None
    )
    return {
        "wallet": wallet.name,
        "wallets": [w.name for w in store.wallets()],
        "rules": wallet.rules,
        "initial_cash": initial,
        "benchmark_symbol": symbol,
        "benchmark_note": note,
        "points": points,
        "metrics": metrics,
        "benchmark_metrics": bench_metrics,
        "months": monthly_pnl(equity, initial),
        "equity_svg": line_chart(series, "equity", money=True),
        "drawdown_svg": line_chart(drawdowns, "drawdown", floor_zero=True),
    }


# ---- outcomes -------------------------------------------------------------------------------


def hit_rates(store: SignalStore) -> dict[str, Any]:
    """Resolved outcomes' hit rate and mean side return overall and by horizon, sector and
    month of the call (``signal_date``); pending outcomes are counted, not rated."""
    outcomes = store.outcomes()
    pending = int((outcomes["status"] == "pending").sum()) if len(outcomes) else 0
    done = outcomes[outcomes["status"] == "resolved"].copy() if len(outcomes) else outcomes
    out: dict[str, Any] = {"resolved": len(done), "pending": pending}
    if done.empty:
        out.update(overall=None, **{g: [] for g in HIT_GROUPS})
        return out
    done["month"] = pd.to_datetime(done["signal_date"]).dt.to_period("M").astype(str)
    done["hit"] = done["correct"].astype(bool)
    out["overall"] = _rate(done)
    for group in HIT_GROUPS:
        out[group] = [
            {group: _cell(key) if group == "horizon" else str(key), **_rate(rows)}
            for key, rows in done.groupby(group, sort=True)
        ]
    return out


def _rate(rows: pd.DataFrame) -> dict[str, Any]:
    returns = pd.to_numeric(rows["side_return"], errors="coerce")
    return {
        "n": len(rows),
        "hits": int(rows["hit"].sum()),
        "hit_rate": float(rows["hit"].mean()),
        "mean_return": _num(returns.mean()) if returns.notna().any() else None,
    }


# ---- trade quality --------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeFilter:
    """What-if filters of the trade-quality page; ``None`` lets everything through."""

    min_confidence: float | None = None
    tier: str | None = None
    regime: str | None = None
    sector: str | None = None

    @classmethod
    def parse(
        cls,
        min_confidence: str | None = None,
        tier: str | None = None,
        regime: str | None = None,
        sector: str | None = None,
    ) -> TradeFilter:
        """Filters from query text; an empty value is no filter, anything the store could not
        hold is a :class:`PerformanceInputError` naming what is allowed."""
        conf = None
        if min_confidence not in (None, ""):
            try:
                conf = float(str(min_confidence))
            except ValueError:
                conf = math.nan
            if not 0.0 <= conf <= 1.0:  # NaN fails too
                raise PerformanceInputError(
                    f"min_confidence must be a number from 0 to 1, not {min_confidence!r}"
                )
        return cls(
            min_confidence=conf,
            tier=_one_of("tier", tier, TIERS),
            regime=_one_of("regime", regime, REGIMES),
            sector=_one_of("sector", sector, GICS_SECTORS),
        )

    def apply(self, trades: pd.DataFrame) -> pd.DataFrame:
        keep = pd.Series(True, index=trades.index)
        if self.min_confidence is not None:
            keep &= trades["confidence"].astype(float) >= self.min_confidence  # NaN: dropped
        for column in ("tier", "regime", "sector"):
            value = getattr(self, column)
            if value is not None:
                keep &= trades[column] == value
        return trades[keep]


def _one_of(name: str, value: str | None, allowed: Sequence[str]) -> str | None:
    if value in (None, ""):
        return None
    if value not in allowed:
        raise PerformanceInputError(f"unknown {name} {value!r}; one of: {', '.join(allowed)}")
    return value


def closed_trades(store: SignalStore, wallet: Wallet) -> pd.DataFrame:
    """The wallet's closed trades with the confidence of the call each entered on."""
    trades = store.wallet_positions(wallet.name, status="closed")
    if trades.empty:
        return trades.assign(confidence=pd.Series(dtype=float))
    history = store.signal_history(since=pd.Timestamp(trades["signal_date"].min()).date())
    calls = history[history["scan_date"] == history["signal_date"]]
    best = calls.groupby(["symbol", "signal_date"])["confidence"].max().rename("confidence")
    trades = trades.join(best, on=["symbol", "signal_date"])
    return trades.reset_index(drop=True)


def trade_quality(
    store: SignalStore, filters: TradeFilter, wallet_name: str | None = None
) -> dict[str, Any]:
    """The wallet's closed trades through ``filters``: how many remain of how many, their win
    rate (net P&L > 0) and mean net return, the values each filter can take, and the rows."""
    wallet = _wallet(store, wallet_name)
    trades = closed_trades(store, wallet)
    kept = filters.apply(trades) if len(trades) else trades
    m = trade_metrics(kept)
    present = {
        c: sorted({str(v) for v in trades[c].dropna()}) if len(trades) else []
        for c in ("tier", "regime", "sector")
    }
    rows = [
        {c: _cell(r[c]) for c in TRADE_COLUMNS} | {"hit": bool(r["net_pnl"] > 0)}
        for r in kept.sort_values(["exit_date", "trade_id"]).to_dict("records")
    ]
    return {
        "wallet": wallet.name,
        "wallets": [w.name for w in store.wallets()],
        "filters": asdict(filters),
        "total": len(trades),
        "n": len(kept),
        "hits": int((kept["net_pnl"] > 0).sum()) if len(kept) else 0,
        "hit_rate": _num(m["win_rate"]),
        "mean_return": _num(m["avg_return"]),
        "net_pnl": _num(m["net_pnl"]),
        "present": present,
        "allowed": {"tier": list(TIERS), "regime": list(REGIMES), "sector": list(GICS_SECTORS)},
        "trades": rows,
    }


def _cell(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return _day(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- SVG ------------------------------------------------------------------------------------

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 1100, 260, 84, 16, 30, 26
COLOURS = ("#58a6ff", "#e3b341", "#3fb950", "#f85149")


def line_chart(
    series: dict[str, pd.Series], label: str, *, money: bool = False, floor_zero: bool = False
) -> str:
    """An SVG line chart of date-indexed series sharing one axis: gridlines at the top, middle
    and bottom of the range, labelled; first and last date under the axis; a legend above.
    ``floor_zero`` puts 0 at the top (drawdowns). One ``<polyline data-series=…>`` per series,
    one point per day."""
    values = np.concatenate([s.to_numpy(dtype=float) for s in series.values()] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    title = html.escape(label)
    if values.size == 0:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'aria-label="{title}" viewBox="0 0 {WIDTH} 40"><text x="8" y="24" '
            f'fill="#8a99a8">no marks yet</text></svg>'
        )
    lo, hi = float(values.min()), float(values.max())
    if floor_zero:
        hi = max(hi, 0.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    index = next(iter(series.values())).index
    n = len(index)
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return PAD_T + inner_h * (hi - v) / (hi - lo)

    def tick(v: float) -> str:
        return f"{v:,.0f}" if money else f"{v * 100:.1f} %"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{title}" viewBox="0 0 {WIDTH} {HEIGHT}" font-size="12" '
        f'font-family="system-ui, sans-serif">'
    ]
    for v in (hi, (hi + lo) / 2, lo):
        parts.append(
            f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="#263140"/><text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
            f'fill="#8a99a8">{tick(v)}</text>'
        )
    first, last = _day(index[0]), _day(index[-1])
    parts.append(
        f'<text x="{PAD_L}" y="{HEIGHT - 8}" fill="#8a99a8">{first}</text>'
        f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 8}" text-anchor="end" fill="#8a99a8">{last}</text>'
    )
    for k, (name, s) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = " ".join(
            f"{x(i):.1f},{y(float(v)):.1f}" for i, v in enumerate(s.to_numpy()) if math.isfinite(v)
        )
        parts.append(
            f'<polyline data-series="{html.escape(name)}" fill="none" stroke="{colour}" '
            f'stroke-width="1.8" points="{pts}"/>'
            f'<rect x="{PAD_L + 170 * k}" y="8" width="14" height="3" fill="{colour}"/>'
            f'<text x="{PAD_L + 20 + 170 * k}" y="14" fill="#d8e0e8">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
