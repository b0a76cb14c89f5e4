"""One trading day of a paper wallet: the backtest engine's day, run live and kept in the store.

The day is the engine's own step (:func:`turbomode.backtest.engine.step_day`) on the day's
bars, so a wallet trades what a backtest of the same signals would:

1. **Entries at the open of the day** from the signals made at the close of an earlier day —
   never the day itself: a signal dated on or after the day raises :class:`LookaheadError`.
   A signal older than the wallet's previous run is stale (its open has passed) and skipped.
   Candidates go strongest first (``strength``, else ``confidence``; ties by symbol), sized
   on equity at the previous close: the ATR rules take ``backtest.position_fraction``; the
   Smart rules take the signal's ``size`` column (the scanner's Kelly size) or, without one,
   the cap of its tier, and pass the Smart portfolio constraints
   (:func:`turbomode.smart.portfolio.select`: per sector, correlation, heat, …). Both respect
   the rule set's maximum positions and one position per symbol.
2. **Exits**: every open position (today's entries included) is given the day's bar by the
   wallet's :class:`~turbomode.backtest.policies.ExitPolicy`; a held symbol without a bar for
   :data:`DELISTED_AFTER_DAYS` market days is closed at its last close.
3. **Mark to market** at the close.

Fills, costs and trade accounting are the engine's own (its ``Book``: slippage against the
trade, commission per share and per notional with a floor, cash without margin for longs,
whole shares); the exit rules are the policies the backtest uses. What is the wallet's own is
the state between days (the store) and what a live day cannot know: which signals are stale,
and when a missing bar means a delisting.

The whole day is one transaction (:meth:`SignalStore.write_wallet_day`): a run killed midway
leaves the previous day's state, and running the same day again replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from turbomode.backtest.engine import (
    Book,
    MarketArrays,
    Trade,
    market_arrays,
    normalize_signals,
    step_day,
)
from turbomode.backtest.policies import ExitPolicy, make_policy
from turbomode.backtest.screen import smart_screen
from turbomode.backtest.settings import BacktestSettings
from turbomode.backtest.sizing import FixedFraction, SignalColumnSize, Sizer
from turbomode.config import Settings
from turbomode.errors import TurboModeError
from turbomode.store import SignalStore, WalletBook
from turbomode.wallet.state import decode_state, encode_state

# A held symbol with no bar on this many market days in a row is closed at its last close:
# halts last days, a delisting never ends (the backtest knows the end; a live wallet cannot).
DELISTED_AFTER_DAYS = 5


def _market_days_without_bar(
    prices: pd.DataFrame, market_days: pd.DatetimeIndex, symbol: str, day: date
) -> int:
    """Market days up to ``day`` since ``symbol``'s last bar in ``prices`` (0: a bar today;
    unknown history counts as 0, so a short price frame never closes a position)."""
    own = pd.to_datetime(prices.loc[prices["symbol"] == symbol, "date"]).dt.normalize()
    today = pd.Timestamp(day)
    past = own[own <= today]
    if past.empty:
        return 0
    last = past.max()
    return int(((market_days > last) & (market_days <= today)).sum())


class WalletError(TurboModeError):
    """A wallet day that cannot be run as asked (no bars, bad signals, ...)."""


class LookaheadError(WalletError, ValueError):
    """A signal dated on or after the day it would trade: it would act on its own bar."""


@dataclass
class DayResult:
    """What one day did: symbols opened, closed (fully) and still held, skipped signals with
    their reasons, the fills, and the marks at the close."""

    wallet: str
    day: date
    rules: str
    rerun: bool
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    cash: float = 0.0
    market_value: float = 0.0
    equity: float = 0.0


@dataclass
class _LedgerBook(Book):
    """The engine's book, noting the cash after each fill for the ledger."""

    cash_after: list[float] = field(default_factory=list)

    def record(self, trade: Trade, day: date, kind: str, buying: bool, q: float, px: float) -> None:
        super().record(trade, day, kind, buying, q, px)
        self.cash_after.append(self.cash)


def wallet_settings(rules: str, settings: Settings) -> BacktestSettings:
    """The engine settings of a wallet: the backtest's costs and sizing; the Smart rules take
    their own maximum positions and are long-only (as in :mod:`turbomode.backtest.run`)."""
    update: dict[str, Any] = {"rules": rules}
    if rules == "smart":
        update.update(max_positions=settings.smart.max_positions, allow_short=False)
    return settings.backtest.model_copy(update=update)


def wallet_policy(rules: str, settings: Settings) -> ExitPolicy:
    """The exit rule set of a wallet, with the platform's settings."""
    return make_policy(rules, settings.risk, settings.smart, settings.backtest.default_horizon)


def _sizer(rules: str, cfg: BacktestSettings) -> Sizer:
    return SignalColumnSize("size") if rules == "smart" else FixedFraction(cfg.position_fraction)


def _prepare_signals(
    signals: pd.DataFrame | None, day: date, rules: str, settings: Settings
) -> pd.DataFrame:
    """The engine's checked signal table, refused when any signal is not from before ``day``;
    for the Smart rules a ``tier`` (Average by default) and a ``size`` (the tier's cap when
    the signal has none)."""
    if signals is None or signals.empty:
        return pd.DataFrame(columns=["date", "symbol", "side", "sector", "_rank", "_regime"])
    sig = normalize_signals(signals)
    late = sig[sig["date"] >= pd.Timestamp(day)]
    if len(late):
        first = late.iloc[0]
        raise LookaheadError(
            f"signal {first['symbol']} of {first['date'].date()} cannot trade on {day}: a signal "
            "acts on the open after the close that made it, never on its own bar"
        )
    if rules == "smart":
        from turbomode.smart.types import to_tier

        smart = settings.smart
        tiers = sig["tier"] if "tier" in sig else pd.Series("Average", index=sig.index)
        sig["tier"] = [to_tier(t if isinstance(t, str) and t else "Average").value for t in tiers]
        caps = [min(smart.tier_cap[to_tier(t)], smart.max_size) for t in sig["tier"]]
        given = pd.to_numeric(sig["size"], errors="coerce") if "size" in sig else None
        sig["size"] = caps if given is None else given.fillna(pd.Series(caps, index=sig.index))
    return sig.sort_values(["_rank", "symbol"], ascending=[False, True]).reset_index(drop=True)


def _trade_from_row(row: Mapping[str, Any], col: int) -> Trade:
    return Trade(
        trade_id=int(row["trade_id"]),
        symbol=str(row["symbol"]),
        col=col,
        sign=1.0 if row["side"] == "long" else -1.0,
        sector=str(row["sector"]),
        regime=row["regime"],
        tier=row["tier"],
        strength=float(row["strength"]),
        signal_date=row["signal_date"],
        entry_date=row["entry_date"],
        entry_price=float(row["entry_price"]),
        entry_fill=float(row["entry_fill"]),
        shares=float(row["shares"]),
        state=decode_state(row["policy_state"]),
        shares_open=float(row["shares_open"]),
        bars_held=int(row["bars_held"]),
        last_close=float(row["last_close"]),
        commission=float(row["commission"]),
        slippage_cost=float(row["slippage_cost"]),
        exit_value=float(row["exit_value"]),
        exit_raw_value=float(row["exit_raw_value"]),
        n_exits=int(row["n_exits"]),
        exit_reason=str(row["exit_reason"] or ""),
        exit_date=row["exit_date"],
    )


def _trade_row(t: Trade, closed: Mapping[str, Any] | None, version: int) -> dict[str, Any]:
    return {
        "trade_id": t.trade_id,
        "symbol": t.symbol,
        "status": "closed" if closed is not None else "open",
        "side": "long" if t.sign > 0 else "short",
        "sector": t.sector,
        "regime": t.regime,
        "tier": t.tier,
        "strength": t.strength,
        "signal_date": t.signal_date,
        "entry_date": t.entry_date,
        "entry_price": t.entry_price,
        "entry_fill": t.entry_fill,
        "shares": t.shares,
        "shares_open": t.shares_open,
        "bars_held": t.bars_held,
        "last_close": t.last_close,
        "commission": t.commission,
        "slippage_cost": t.slippage_cost,
        "exit_value": t.exit_value,
        "exit_raw_value": t.exit_raw_value,
        "n_exits": t.n_exits,
        "exit_reason": t.exit_reason or None,
        "exit_date": t.exit_date,
        "gross_pnl": None if closed is None else float(closed["gross_pnl"]),
        "net_pnl": None if closed is None else float(closed["net_pnl"]),
        "net_return": None if closed is None else float(closed["net_return"]),
        "policy_state": encode_state(t.state),
        "version": version,
    }


def _changed(row: dict[str, Any], stored: Mapping[str, Any] | None) -> bool:
    if stored is None:
        return True
    return any(row[k] != stored[k] for k in row if k != "version")


def _entry_reason(t: Trade) -> str:
    side = "BUY" if t.sign > 0 else "SELL"
    return f"{side} signal of {t.signal_date} (strength {t.strength:.4g}): filled at the open"


def _stale(sig: pd.DataFrame, start: WalletBook) -> list[tuple[Any, str]]:
    """Signals older than the wallet's previous run (label in ``sig``, reason): their open has
    passed."""
    if start.previous_day is None:
        return []
    old = sig[sig["date"] < pd.Timestamp(start.previous_day)]
    return [
        (k, f"stale: the open after {pd.Timestamp(d).date()} was before this day")
        for k, d in zip(old.index, old["date"], strict=True)
    ]


def _missing_bars(
    book: Book, mkt: MarketArrays, prices: pd.DataFrame, day: date
) -> tuple[dict[str, str], list[str]]:
    """Held symbols without a bar today: those to close as delisted (symbol → reason), and
    the rest, held on."""
    market_days = pd.DatetimeIndex(pd.to_datetime(prices["date"]).dt.normalize().unique())
    delisted: dict[str, str] = {}
    no_bar: list[str] = []
    for trade in sorted(book.open.values(), key=lambda t: t.trade_id):
        if mkt.bar(0, trade.col) is not None:
            continue
        gone = _market_days_without_bar(prices, market_days, trade.symbol, day)
        if gone >= DELISTED_AFTER_DAYS:  # as the backtest does: out at its last close
            delisted[trade.symbol] = "delisted"
        else:
            no_bar.append(trade.symbol)
    return delisted, no_bar


def _run(
    store: SignalStore,
    wallet_name: str,
    day: date,
    prices: pd.DataFrame,
    signals: pd.DataFrame | None,
    settings: Settings,
) -> DayResult:
    start = store.wallet_book(wallet_name, day)
    rules = start.wallet.rules
    cfg = wallet_settings(rules, settings)
    policy = wallet_policy(rules, settings)
    sig = _prepare_signals(signals, day, rules, settings)

    held_rows = {str(r["symbol"]): r for r in start.positions}
    symbols = sorted(set(held_rows) | set(sig["symbol"]))
    on_day = pd.to_datetime(prices["date"]).dt.normalize() == pd.Timestamp(day)
    if not on_day.any():
        raise WalletError(f"no bars on {day} in the prices: the wallet trades only market days")
    mkt = market_arrays(prices, symbols, day, day)

    book = _LedgerBook(settings=cfg, cash=start.cash, next_trade_id=start.next_trade_id)
    stored = {int(r["trade_id"]): r for r in start.positions}
    trades = [_trade_from_row(r, mkt.cols[str(r["symbol"])]) for r in start.positions]
    for t in trades:
        book.open[t.symbol] = t

    delisted, no_bar = _missing_bars(book, mkt, prices, day)
    stale = _stale(sig, start)
    step = step_day(
        book,
        mkt,
        0,
        sig.drop(index=[k for k, _ in stale]),
        equity_prev=start.equity,
        sizer=_sizer(rules, cfg),
        policy=policy,
        screen=smart_screen(prices, settings) if rules == "smart" else None,
        close_out=delisted,
    )
    # in the order of the candidates, strongest first
    skipped = [(str(sig.at[k, "symbol"]), why) for k, why in sorted(stale + step.skipped)]
    opened = step.opened
    trades += opened
    long_v, short_v, equity = step.long_value, step.short_value, step.equity
    closed = {int(c["trade_id"]): c for c in book.closed}

    rows = []
    for t in trades:
        stored_row = stored.get(t.trade_id)
        row = _trade_row(
            t, closed.get(t.trade_id), 0 if stored_row is None else stored_row["version"]
        )
        if _changed(row, stored_row):
            rows.append(row)
    fills = []
    by_id = {t.trade_id: t for t in trades}
    for (trade_id, _d, sym, kind, action, q, px, fill, fee), cash_after in zip(
        book.fills, book.cash_after, strict=True
    ):
        t = by_id[trade_id]
        reason = _entry_reason(t) if kind == "entry" else f"{kind}: exit rules at {px:.6g}"
        fills.append(
            {
                "trade_id": trade_id,
                "symbol": sym,
                "kind": kind,
                "action": action,
                "shares": q,
                "price": px,
                "fill": fill,
                "commission": fee,
                "slippage": q * abs(fill - px),
                "cash_after": cash_after,
                "reason": reason,
            }
        )
    result = DayResult(
        wallet=wallet_name,
        day=day,
        rules=rules,
        rerun=start.rerun,
        opened=[t.symbol for t in opened],
        closed=sorted(by_id[i].symbol for i in closed),
        held=sorted(book.open),
        skipped=skipped,
        fills=fills,
        cash=book.cash,
        market_value=long_v - short_v,
        equity=equity,
    )
    summary = {
        "signal_dates": sorted({str(pd.Timestamp(d).date()) for d in sig["date"]}),
        "opened": result.opened,
        "closed": result.closed,
        "held": result.held,
        "no_bar": sorted(no_bar),
        "skipped": [{"symbol": s, "reason": r} for s, r in skipped],
    }
    store.write_wallet_day(
        wallet_name,
        day,
        version=start.wallet.version,
        positions=rows,
        fills=fills,
        equity={
            "cash": book.cash,
            "long_value": long_v,
            "short_value": short_v,
            "market_value": long_v - short_v,
            "equity": equity,
            "n_open": len(book.open),
            "n_opened": len(opened),
            "n_closed": len(closed),
            "commission": book.day_commission,
            "summary": summary,
        },
    )
    return result


def run_day(
    store: SignalStore,
    wallet_name: str,
    day: date,
    prices: pd.DataFrame,
    signals: pd.DataFrame | None,
    settings: Settings,
) -> DayResult:
    """Run one market day of a wallet and record it in one transaction (module docstring).

    ``prices`` is the project's long frame (symbol, date, open, high, low, close); it must hold
    the day's bars, and, for the Smart rules' correlation check, may hold earlier history.
    ``signals`` is the engine's signal table (:data:`turbomode.backtest.SIGNAL_COLUMNS` and
    its optional columns), made at a close before ``day``. Running a day already written
    replaces it; a day before the wallet's last run is refused. Job metrics are pushed under
    ``wallet`` with rows by stage (opened, closed, held).
    """
    from turbomode.job_metrics import job_metrics

    d = pd.Timestamp(day).date()
    with job_metrics("wallet", settings.stores.pushgateway_url) as metrics:
        result = _run(store, wallet_name, d, prices, signals, settings)
        metrics.rows.labels(stage="opened").inc(len(result.opened))
        metrics.rows.labels(stage="closed").inc(len(result.closed))
        metrics.rows.labels(stage="held").inc(len(result.held))
    return result
