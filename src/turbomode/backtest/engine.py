"""Daily event-driven portfolio simulation over real history.

Input is a table of signals (see :data:`SIGNAL_COLUMNS`): one row per call, dated by the bar
whose *close* made it. Walk-forward signal generation only has to produce that table; the
engine never sees a model.

Each trading day t of the calendar (every date in ``prices``), in this order — one call of
:func:`step_day`, which the paper wallet (:mod:`turbomode.wallet.day`) runs on its live days too:

1. **Entries at the open of t** for the signals of the previous trading day, strongest first
   (``strength``, else ``confidence``; ties by symbol). A signal is never acted on at or
   before its own bar — it fills at the first calendar date strictly after its date, and a
   signal from the last day never fills. An entry is skipped, with the reason recorded in
   :attr:`BacktestResult.skipped`, when the symbol was not an index member on the signal date
   (point-in-time :class:`~turbomode.data.universe.Universe`), the side is not allowed, the
   day's screen keeps it out, the book holds ``max_positions``, it has no bar that day, is
   already held, the sizer gives 0 or less than one share, the gross book would exceed
   ``max_gross_leverage`` × equity, or the exit rules refuse it — the first of these that
   applies is the reason. Sizing uses equity at the previous close.
2. **Exits**: every open position (the new ones included — the entry bar's high, low and
   close come after the fill) is given bar t by its :class:`~turbomode.backtest.policies.
   ExitPolicy`; each exit, partial or full, becomes a fill.
3. **Delisting**: a position whose symbol has no later bar while the calendar goes on is
   closed at that last close (reason ``delisted``). On the calendar's last day every open
   position is closed at its last close (``end_of_data``) so each trade has a net return.
4. **Mark to market** at the close: equity = cash + longs − shorts, at each symbol's last
   close.

Costs, per fill (entries and every exit): the fill price is the rule's market price moved
``slippage_bps`` against the trade, and the commission is ``commission_per_share`` × shares
+ ``commission_bps`` × filled notional, at least ``min_commission``. Rule levels (stops,
targets) are set around the market open, not the slipped fill: slippage is a cost of
trading, not a change of the plan.

Bars whose high or low lie a rounding error inside the open or close (3,320 of 2.7 M rows of
the adjusted real data) are widened to contain them before the rules see them; the count is in
:attr:`BacktestResult.repaired_bars`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from turbomode.backtest.policies import Bar, EntryOrder, ExitEvent, ExitPolicy, make_policy
from turbomode.backtest.settings import BacktestSettings
from turbomode.backtest.sizing import FixedFraction, Sizer, SizingContext
from turbomode.data.schema import require_columns
from turbomode.data.universe import Universe
from turbomode.errors import SchemaError

SIGNAL_COLUMNS: tuple[str, ...] = ("date", "symbol", "side")
"""Required signal columns. Optional: ``strength`` or ``confidence`` (ranking; ``strength``
0–100 also feeds Kelly sizing), ``sector`` (else the universe's), ``regime``, and what the
exit rules need — ATR: ``stop_distance`` (1R in price units) or ``atr`` (+ ``confidence``,
``horizon``), optional ``horizon``, ``entry_low``/``entry_high``; Smart: ``tier``. A ``size``
column feeds :class:`~turbomode.backtest.sizing.SignalColumnSize`."""
PRICE_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close")

TRADE_COLUMNS: tuple[str, ...] = (
    "trade_id",
    "symbol",
    "sector",
    "side",
    "regime",
    "tier",
    "strength",
    "signal_date",
    "entry_date",
    "entry_price",
    "entry_fill",
    "shares",
    "exit_date",
    "exit_fill_avg",
    "exit_reason",
    "n_exits",
    "bars_held",
    "gross_pnl",
    "commission",
    "slippage_cost",
    "net_pnl",
    "net_return",
)
FILL_COLUMNS: tuple[str, ...] = (
    "trade_id",
    "date",
    "symbol",
    "kind",
    "action",
    "shares",
    "price",
    "fill",
    "commission",
    "slippage_cost",
)
SKIP_COLUMNS: tuple[str, ...] = ("date", "symbol", "side", "reason")
_EPS = 1e-9


@dataclass
class BacktestResult:
    """Everything a run produced. ``daily`` is indexed by date with cash, long_value,
    short_value (a positive liability), equity, return, n_positions, gross_value (book at the
    close), held_value (the close book plus what was sold that day, at the fills: what was
    invested at some point in the day), traded_notional, commission and regime."""

    daily: pd.DataFrame
    trades: pd.DataFrame
    fills: pd.DataFrame
    skipped: pd.DataFrame
    settings: BacktestSettings
    policy: str
    repaired_bars: int = 0

    @property
    def final_equity(self) -> float:
        return float(self.daily["equity"].iloc[-1])


@dataclass
class Trade:
    trade_id: int
    symbol: str
    col: int
    sign: float
    sector: str
    regime: str | None
    tier: str | None
    strength: float
    signal_date: date
    entry_date: date
    entry_price: float
    entry_fill: float
    shares: float
    state: Any
    shares_open: float = 0.0
    bars_held: int = 0
    last_close: float = 0.0
    commission: float = 0.0
    slippage_cost: float = 0.0
    exit_value: float = 0.0  # Σ shares × fill over exits
    exit_raw_value: float = 0.0  # Σ shares × market price over exits
    n_exits: int = 0
    exit_reason: str = ""
    exit_date: date | None = None


@dataclass
class Book:
    """The state a day steps: cash, the open trades by symbol, the fills and closed trades so
    far, the next trade's id, and the current day's turnover counters."""

    settings: BacktestSettings
    cash: float
    open: dict[str, Trade] = field(default_factory=dict)
    next_trade_id: int = 1
    fills: list[tuple[Any, ...]] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    day_traded: float = 0.0
    day_commission: float = 0.0
    day_sold: float = 0.0

    def commission(self, shares: float, fill: float) -> float:
        s = self.settings
        fee = s.commission_per_share * shares + s.commission_bps * 1e-4 * shares * fill
        return max(fee, s.min_commission)

    def slipped(self, price: float, buying: bool) -> float:
        slip = self.settings.slippage_bps * 1e-4
        return price * (1.0 + slip) if buying else price * (1.0 - slip)

    def record(self, trade: Trade, day: date, kind: str, buying: bool, q: float, px: float) -> None:
        fill = self.slipped(px, buying)
        fee = self.commission(q, fill)
        self.cash += -q * fill - fee if buying else q * fill - fee
        trade.commission += fee
        trade.slippage_cost += q * abs(fill - px)
        self.day_traded += q * fill
        self.day_commission += fee
        action = "buy" if buying else "sell"
        self.fills.append((trade.trade_id, day, trade.symbol, kind, action, q, px, fill, fee))
        if kind != "entry":
            trade.exit_value += q * fill
            trade.exit_raw_value += q * px
            trade.n_exits += 1
            self.day_sold += q * fill

    def exit(self, trade: Trade, day: date, kind: str, price: float, q: float) -> None:
        """Sell (long) or buy back (short) ``q`` shares at market ``price`` plus costs."""
        q = min(q, trade.shares_open)
        if q <= 0.0:
            return
        self.record(trade, day, kind, trade.sign < 0, q, price)
        trade.shares_open -= q
        if trade.shares_open <= _EPS:
            trade.shares_open = 0.0
            trade.exit_reason = kind
            trade.exit_date = day
            self._finish(trade)

    def _finish(self, t: Trade) -> None:
        del self.open[t.symbol]
        entry_value = t.shares * t.entry_fill
        gross = t.sign * (t.exit_raw_value - t.shares * t.entry_price)
        net = t.sign * (t.exit_value - entry_value) - t.commission
        self.closed.append(
            {
                "trade_id": t.trade_id,
                "symbol": t.symbol,
                "sector": t.sector,
                "side": "long" if t.sign > 0 else "short",
                "regime": t.regime,
                "tier": t.tier,
                "strength": t.strength,
                "signal_date": t.signal_date,
                "entry_date": t.entry_date,
                "entry_price": t.entry_price,
                "entry_fill": t.entry_fill,
                "shares": t.shares,
                "exit_date": t.exit_date,
                "exit_fill_avg": t.exit_value / t.shares,
                "exit_reason": t.exit_reason,
                "n_exits": t.n_exits,
                "bars_held": t.bars_held,
                "gross_pnl": gross,
                "commission": t.commission,
                "slippage_cost": t.slippage_cost,
                "net_pnl": net,
                "net_return": net / entry_value,
            }
        )

    def apply(self, trade: Trade, events: list[ExitEvent]) -> None:
        for ev in events:
            if trade.symbol not in self.open:
                return
            if ev.closes:
                q = trade.shares_open
            else:
                q = ev.fraction * trade.shares
                if self.settings.whole_shares:
                    q = math.floor(q + _EPS)
            self.exit(trade, ev.date, ev.kind, ev.price, q)
        if trade.symbol in self.open and any(ev.closes for ev in events):
            # the rules are flat but rounding left shares: they go with the closing event
            last = next(ev for ev in reversed(events) if ev.closes)
            self.exit(trade, last.date, last.kind, last.price, trade.shares_open)


# A day's candidates (strongest first) and the book → symbol → why it is kept out.
Screen = Callable[[pd.DataFrame, Book], Mapping[str, str]]


def _to_date(value: Any) -> date:
    return pd.Timestamp(value).date()


def normalize_signals(signals: pd.DataFrame, universe: Universe | None = None) -> pd.DataFrame:
    """A checked copy: dates as midnight Timestamps, side BUY/SELL, a ``strength`` rank key
    (from ``strength`` or ``confidence``), a ``_regime`` (the ``regime`` column, else None), a
    ``sector`` (from the universe when absent) and an ``is_member`` flag (point-in-time
    membership on the signal date; all True without a universe). Two signals for one symbol on
    one date are an error: pick one upstream."""
    require_columns(signals, list(SIGNAL_COLUMNS), "signals")
    s = signals.copy().reset_index(drop=True)
    s["date"] = pd.to_datetime(s["date"]).dt.normalize()
    s["symbol"] = s["symbol"].astype(str)
    s["side"] = s["side"].astype(str).str.upper()
    bad = sorted(set(s["side"]) - {"BUY", "SELL"})
    if bad:
        raise SchemaError(f"signals: unknown side(s) {bad}; expected BUY or SELL")
    dup = s.duplicated(["date", "symbol"])
    if dup.any():
        first = s.loc[dup, ["date", "symbol"]].iloc[0]
        raise SchemaError(
            f"signals: {int(dup.sum())} duplicate (date, symbol) row(s), e.g. "
            f"{first['symbol']} on {first['date'].date()}; keep one signal per symbol and day"
        )
    # the rules see a trade's regime from here unless the caller knows the day's regime
    s["_regime"] = s.get("regime")
    if "strength" in s:
        s["_rank"] = pd.to_numeric(s["strength"], errors="coerce").fillna(0.0)
    elif "confidence" in s:
        s["_rank"] = pd.to_numeric(s["confidence"], errors="coerce").fillna(0.0)
    else:
        s["_rank"] = 0.0
    sectors = universe.sector_map() if universe is not None else {}
    if "sector" not in s:
        s["sector"] = s["symbol"].map(sectors)
    else:
        s["sector"] = s["sector"].where(s["sector"].notna(), s["symbol"].map(sectors))
    s["sector"] = s["sector"].fillna("Unknown").astype(str)
    if universe is None:
        s["is_member"] = True
    else:
        known = s["symbol"].isin(set(universe.symbols))
        s["is_member"] = universe.membership_mask(s[["symbol", "date"]]).to_numpy() & known
    return s


@dataclass(frozen=True)
class MarketArrays:
    dates: pd.DatetimeIndex
    symbols: list[str]
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    last: np.ndarray  # last calendar index with a bar, per symbol (-1: none)
    repaired: int
    cols: dict[str, int] = field(default_factory=dict)  # symbol → column
    days: list[date] = field(default_factory=list)  # the calendar as dates

    def bar(self, i: int, j: int) -> Bar | None:
        """Day ``i``'s bar of column ``j``, None when it has none (the four prices are NaN
        together)."""
        if not np.isfinite(self.c[i, j]):
            return None
        prices = (float(a[i, j]) for a in (self.o, self.h, self.lo, self.c))
        return Bar(self.days[i], *prices)


def market_arrays(
    prices: pd.DataFrame, symbols: list[str], start: Any | None, end: Any | None
) -> MarketArrays:
    require_columns(prices, list(PRICE_COLUMNS), "prices")
    dates_all = pd.to_datetime(prices["date"]).dt.normalize()
    keep = np.ones(len(prices), dtype=bool)
    if start is not None:
        keep &= (dates_all >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (dates_all <= pd.Timestamp(end)).to_numpy()
    calendar = pd.DatetimeIndex(np.sort(dates_all[keep].unique()))
    if len(calendar) == 0:
        raise SchemaError("prices: no bars inside the backtest window")
    sub = prices.loc[keep & prices["symbol"].isin(symbols).to_numpy(), list(PRICE_COLUMNS)].copy()
    sub["date"] = dates_all[sub.index]
    if sub.duplicated(["symbol", "date"]).any():
        raise SchemaError("prices: more than one bar for a (symbol, date)")
    # scatter straight into (date × symbol) arrays: a pivot per column costs seconds at scale
    r = np.searchsorted(calendar.to_numpy(), sub["date"].to_numpy())
    k = pd.Index(symbols).get_indexer(pd.Index(sub["symbol"]))
    o, h, lo, c = (np.full((len(calendar), len(symbols)), np.nan) for _ in range(4))
    for arr, name in ((o, "open"), (h, "high"), (lo, "low"), (c, "close")):
        arr[r, k] = sub[name].to_numpy(dtype=float)
    valid = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
    o, h, lo, c = (np.where(valid, a, np.nan) for a in (o, h, lo, c))
    hi_fix = np.fmax(np.fmax(h, o), c)
    lo_fix = np.fmin(np.fmin(lo, o), c)
    repaired = int(np.sum(valid & ((hi_fix != h) | (lo_fix != lo))))
    idx = np.arange(len(calendar))[:, None]
    last = np.where(valid, idx, -1).max(axis=0) if len(symbols) else np.zeros(0, dtype=int)
    cols = {s: j for j, s in enumerate(symbols)}
    days = [d.date() for d in calendar]
    return MarketArrays(calendar, symbols, o, hi_fix, lo_fix, c, last, repaired, cols, days)


def run_backtest(
    signals: pd.DataFrame,
    prices: pd.DataFrame,
    policy: ExitPolicy | None = None,
    settings: BacktestSettings | None = None,
    *,
    universe: Universe | None = None,
    sizer: Sizer | None = None,
    regimes: pd.Series | None = None,
    start: Any | None = None,
    end: Any | None = None,
    screen: Screen | None = None,
) -> BacktestResult:
    """Simulate the signals over the price history (module docstring for the day's order).

    ``prices`` is the project's long frame (symbol, date, open, high, low, close; adjusted);
    its dates inside ``start``..``end`` are the calendar. ``policy`` defaults to the rule set
    ``settings.rules`` names with its default settings; ``sizer`` to
    :class:`~turbomode.backtest.sizing.FixedFraction` of ``settings.position_fraction``.
    ``regimes`` (date → label) tags each day and each trade (by its signal date); without it a
    trade takes its signal's ``regime`` column when there is one. ``screen`` sees each day's
    candidates (strongest first) and the book before the entries and returns symbol → reason
    for those it keeps out (the Smart Scanner's portfolio constraints).
    """
    cfg = settings or BacktestSettings()
    rules = policy or make_policy(cfg.rules, default_horizon=cfg.default_horizon)
    size_of = sizer or FixedFraction(cfg.position_fraction)
    sig = normalize_signals(signals, universe)
    symbols = sorted(sig["symbol"].unique())
    mkt = market_arrays(prices, symbols, start, end)
    n = len(mkt.dates)

    regime_by_date: dict[pd.Timestamp, str] = {}
    if regimes is not None:
        r = regimes.copy()
        r.index = pd.to_datetime(r.index).normalize()
        r = r.dropna()
        regime_by_date = {
            k: str(v) for k, v in zip(pd.DatetimeIndex(r.index), r.to_numpy(), strict=True)
        }
    if regime_by_date:
        sig["_regime"] = sig["date"].map(regime_by_date)

    # fill day: the first calendar date strictly after the signal's date
    fill_idx = np.searchsorted(mkt.dates.to_numpy(), sig["date"].to_numpy(), side="right")
    sig["_fill"] = fill_idx
    skipped: list[tuple[np.ndarray, str | np.ndarray]] = []
    before = (sig["date"] < mkt.dates[0]).to_numpy()
    after = (sig["date"] > mkt.dates[-1]).to_numpy()
    no_next = (fill_idx >= n) & ~after
    skipped += [
        (np.flatnonzero(before), "signal before the backtest window"),
        (np.flatnonzero(after), "signal after the backtest window"),
        (np.flatnonzero(no_next), "no bar after the signal date: never filled"),
    ]
    usable = ~(before | after | no_next)
    not_member = usable & ~sig["is_member"].to_numpy()
    skipped.append((np.flatnonzero(not_member), "not in the index universe on the signal date"))
    usable &= ~not_member

    cand = sig[usable].sort_values(["_fill", "_rank", "symbol"], ascending=[True, False, True])
    cand_fill = cand["_fill"].to_numpy()
    cand_pos = np.searchsorted(cand_fill, np.arange(n + 1), side="left")
    # 3. the day a symbol's bars end (delisted); on the last day everything goes
    last_bar: dict[int, list[str]] = {}
    for j, i_last in enumerate(mkt.last.tolist()):
        last_bar.setdefault(i_last, []).append(symbols[j])
    end_of_data = dict.fromkeys(symbols, "end_of_data")

    book = Book(settings=cfg, cash=cfg.initial_cash)
    equity_prev = cfg.initial_cash
    row_skips: list[tuple[Any, str]] = []
    daily: list[dict[str, Any]] = []

    for i in range(n):
        lo_i, hi_i = int(cand_pos[i]), int(cand_pos[i + 1])
        step = step_day(
            book,
            mkt,
            i,
            cand.iloc[lo_i:hi_i],
            equity_prev=equity_prev,
            sizer=size_of,
            policy=rules,
            screen=screen,
            close_out=end_of_data if i == n - 1 else dict.fromkeys(last_bar.get(i, ()), "delisted"),
        )
        row_skips += step.skipped
        daily.append(
            {
                "date": mkt.dates[i],
                "cash": book.cash,
                "long_value": step.long_value,
                "short_value": step.short_value,
                "equity": step.equity,
                "return": step.equity / equity_prev - 1.0,
                "n_positions": len(book.open),
                "gross_value": step.long_value + step.short_value,
                "held_value": step.long_value + step.short_value + book.day_sold,
                "traded_notional": book.day_traded,
                "commission": book.day_commission,
                "regime": regime_by_date.get(mkt.dates[i]),
            }
        )
        equity_prev = step.equity

    if row_skips:
        rows, reasons = zip(*row_skips, strict=True)
        skipped.append((np.asarray(rows, dtype=int), np.asarray(reasons, dtype=object)))
    return BacktestResult(
        daily=pd.DataFrame(daily).set_index("date"),
        trades=_frame(book.closed, TRADE_COLUMNS),
        fills=_fills_frame(book.fills),
        skipped=_skipped_frame(sig, skipped),
        settings=cfg,
        policy=rules.name,
        repaired_bars=mkt.repaired,
    )


@dataclass
class DayStep:
    """What :func:`step_day` did: the trades it opened, the entries it refused (the candidate's
    index label in ``entries`` and why), the day's fills and closed trades as the book records
    them, and the book's marks at the close."""

    opened: list[Trade]
    skipped: list[tuple[Any, str]]
    fills: list[tuple[Any, ...]]
    closed: list[dict[str, Any]]
    long_value: float
    short_value: float
    equity: float


def step_day(
    book: Book,
    mkt: MarketArrays,
    i: int,
    entries: pd.DataFrame,
    *,
    equity_prev: float,
    sizer: Sizer,
    policy: ExitPolicy,
    screen: Screen | None = None,
    close_out: Mapping[str, str] | None = None,
) -> DayStep:
    """Advance ``book`` through day ``i`` of ``mkt`` (the module docstring's steps 1 to 4): the
    backtest runs it on every day of its calendar and the paper wallet on each live day, so a
    wallet trades exactly what a backtest of the same signals and bars would.

    ``entries`` are the day's candidates, normalized (:func:`normalize_signals`) and strongest
    first; each is refused when a short is not allowed, ``screen`` keeps it out, the book holds
    ``max_positions``, or :func:`open_entry` refuses it, and is otherwise filled at the open,
    sized on ``equity_prev``. Then every open trade, in the order it was opened, is given the
    day's bar; one still open whose symbol is in ``close_out`` (symbol → reason: ``delisted``,
    ``end_of_data``) is closed at its last close — the caller knows when a symbol's bars end.
    The book is changed in place; nothing is read or written elsewhere.
    """
    cfg = book.settings
    day = mkt.days[i]
    book.day_traded = book.day_commission = book.day_sold = 0.0
    n_fills, n_closed = len(book.fills), len(book.closed)
    skipped: list[tuple[Any, str]] = []
    opened: list[Trade] = []
    # 1. entries at the open
    if len(entries) and (policy.long_only or not cfg.allow_short):
        shorts = (entries["side"] != "BUY").to_numpy()
        if shorts.any():
            skipped += [(label, "short entries not allowed") for label in entries.index[shorts]]
            entries = entries[~shorts]
    # The screen judges the day's candidates together against the book; one it accepted that
    # is then refused (no bar, no shares, leverage, exit rules) still counted toward its
    # limits for that day — rare, and on the conservative side.
    kept_out: Mapping[str, str] = {}
    if screen is not None and len(entries):
        kept_out = screen(entries, book)
    gross = sum(abs(t.shares_open * t.last_close) for t in book.open.values())
    labels, symbols = entries.index.tolist(), entries["symbol"].tolist()
    for k, (label, sym) in enumerate(zip(labels, symbols, strict=True)):
        if sym in kept_out:
            skipped.append((label, kept_out[sym]))
            continue
        if len(book.open) >= cfg.max_positions:
            skipped.append((label, "max positions held"))
            continue
        row = entries.iloc[k]
        j = mkt.cols[sym]
        trade, why = open_entry(
            book,
            row,
            trade_id=book.next_trade_id,
            col=j,
            bar=mkt.bar(i, j),
            equity_prev=equity_prev,
            gross=gross,
            sizer=sizer,
            policy=policy,
            regime=row["_regime"],
        )
        if trade is None:
            skipped.append((label, str(why)))
            continue
        book.next_trade_id += 1
        gross += trade.shares * trade.entry_fill
        opened.append(trade)

    # 2. the bar's exits, 3. the closes at the last close the caller asks for
    ends = close_out or {}
    for trade in sorted(book.open.values(), key=lambda t: t.trade_id):
        bar = mkt.bar(i, trade.col)
        if bar is not None:
            trade.bars_held += 1
            trade.last_close = bar.close
            trade.state, events = policy.on_bar(trade.state, bar, trade.bars_held)
            book.apply(trade, events)
        if trade.symbol in book.open and trade.symbol in ends:
            book.exit(trade, day, ends[trade.symbol], trade.last_close, trade.shares_open)

    # 4. mark to market at the close
    long_v = sum((t.shares_open * t.last_close for t in book.open.values() if t.sign > 0), 0.0)
    short_v = sum((t.shares_open * t.last_close for t in book.open.values() if t.sign < 0), 0.0)
    return DayStep(
        opened=opened,
        skipped=skipped,
        fills=book.fills[n_fills:],
        closed=book.closed[n_closed:],
        long_value=long_v,
        short_value=short_v,
        equity=book.cash + long_v - short_v,
    )


def open_entry(
    book: Book,
    row: pd.Series | Mapping[str, Any],
    *,
    trade_id: int,
    col: int,
    bar: Bar | None,
    equity_prev: float,
    gross: float,
    sizer: Sizer,
    policy: ExitPolicy,
    regime: Any = None,
) -> tuple[Trade | None, str | None]:
    """Size one signal at ``bar``'s open, check it fits, let the exit rules accept it, and
    book the fill: the backtest's day loop and the paper wallet both enter through here.

    ``row`` is a normalized signal row (``symbol, side, date, sector, _rank``; columns
    starting with ``_`` are not shown to the sizer or the rules). Returns the trade, or None
    and why it was skipped: no bar, already held, no shares, the gross leverage limit, or the
    exit rules' refusal.
    """
    sym = str(row["symbol"])
    if bar is None:
        return None, "no bar on the fill date"
    if sym in book.open:
        return None, "already held"
    cfg = book.settings
    buying = bool(row["side"] == "BUY")
    fill = book.slipped(bar.open, buying)
    fields = {str(k): v for k, v in row.items() if not str(k).startswith("_")}
    frac = float(sizer(SizingContext(fields, equity_prev, book.cash, fill, len(book.open))))
    shares = max(equity_prev * frac, 0.0) / fill
    if cfg.whole_shares:
        shares = math.floor(shares + _EPS)
    if buying:
        shares = affordable(book, shares, fill)
    if shares <= 0.0:
        return None, "size rounds to no shares"
    if gross + shares * fill > cfg.max_gross_leverage * equity_prev * (1 + _EPS):
        return None, "gross leverage limit"
    order = EntryOrder(
        symbol=sym,
        side=str(row["side"]),
        signal_date=_to_date(row["date"]),
        sector=str(row["sector"]),
        strength=float(row["_rank"]),
        size=frac,
        row=fields,
    )
    state, reason = policy.open(order, bar)
    if state is None:
        return None, f"exit rules: {reason}"
    tier = fields.get("tier")
    trade = Trade(
        trade_id=trade_id,
        symbol=sym,
        col=col,
        sign=1.0 if buying else -1.0,
        sector=order.sector,
        regime=None if regime is None or pd.isna(regime) else str(regime),
        tier=None if tier is None or pd.isna(tier) else str(tier),
        strength=order.strength,
        signal_date=order.signal_date,
        entry_date=bar.date,
        entry_price=bar.open,
        entry_fill=fill,
        shares=shares,
        state=state,
        shares_open=shares,
        last_close=bar.open,
    )
    book.open[sym] = trade
    book.record(trade, bar.date, "entry", buying, shares, bar.open)
    return trade, None


def affordable(book: Book, shares: float, fill: float) -> float:
    """Trim a long's shares to what cash pays for, commission included (no margin)."""
    if shares * fill + book.commission(shares, fill) <= book.cash:
        return shares
    s = book.settings
    per_share = fill * (1.0 + s.commission_bps * 1e-4) + s.commission_per_share
    q = max(book.cash - s.min_commission, 0.0) / per_share
    q = math.floor(q) if s.whole_shares else q
    while q > 0 and q * fill + book.commission(q, fill) > book.cash:
        q = q - 1 if s.whole_shares else q * (1 - 1e-9)
    return max(q, 0.0)


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    return frame.sort_values("trade_id").reset_index(drop=True) if len(frame) else frame


def _fills_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c for c in FILL_COLUMNS if c != "slippage_cost"])
    frame["slippage_cost"] = (frame["fill"] - frame["price"]).abs() * frame["shares"]
    return frame


def _skipped_frame(
    sig: pd.DataFrame, parts: list[tuple[np.ndarray, str | np.ndarray]]
) -> pd.DataFrame:
    """Skipped signals by date and symbol; each part is rows of ``sig`` with one reason, or
    with one reason per row."""
    parts = [(np.asarray(rows, dtype=int), why) for rows, why in parts if len(rows)]
    if not parts:
        return pd.DataFrame(columns=list(SKIP_COLUMNS))
    rows = np.concatenate([r for r, _ in parts])
    reasons = np.concatenate(
        [np.full(len(r), why, dtype=object) if isinstance(why, str) else why for r, why in parts]
    )
    out = sig.loc[rows, ["date", "symbol", "side"]].reset_index(drop=True)
    out["reason"] = reasons
    return out.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
