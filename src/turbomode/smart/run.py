"""The Smart Scanner's jobs — monthly ranking, quarterly curation, nightly smart scan — as
library functions the CLI (and a KFP component) call; the arithmetic lives in the pure modules.

**Measured performance.** The trades table of :mod:`turbomode.smart.trades` is the outcome
tracker's resolved BUY outcomes of one horizon (default 5 days) from the signals store:
``return`` = ``side_return`` (the realized return from the signal's side), a win is a return
above zero. The tracker's ``correct`` flag is not used: it judges the realized *class* under
the labeling rule (a +0.3 % trade can be "wrong"), while Kelly's win rate p and payoff b must
split the same trades, so both come from the return. Only BUY outcomes count because the
Smart Scanner is long-only: how a symbol's SELL calls paid says nothing about its longs. An
outcome counts from its exit date on (``rank_tiers`` sees exits strictly before its date);
``resolved_at`` is the tracker's wall clock, which a replay or back-fill sets to "now", so it
cannot tell what was known when.

**Smart scan** (:func:`run_smart_scan`), for the scan date of the nightly scan's document
(``latest_scan.json``, or ``scan_<date>.json`` for ``as_of``):

1. candidates — tonight's BUY signals of the horizon (signal date = scan date), strength
   100 × P(BUY), price the signal's close;
2. regime — :func:`~turbomode.risk.regime.regime_on` on the scan date; during the detector's
   warm-up there is no regime: sizing uses CHOPPY (multiplier 1.0) and the entry threshold
   the base one, and a note says so;
3. tiers and universe — the persisted ranking and curation in force (:mod:`.state`);
4. Kelly inputs (:mod:`.kelly`) — the symbol's own win rate and payoff over the ranking
   window when it has ``tier_min_trades`` closed trades with a win and a loss; else the pooled
   trades of its tier's symbols; else all trades; else no evidence (p 0.5, b 1: Kelly 0, so
   no position). Each candidate's source is reported;
5. eligibility — a symbol the curation dropped, or whose adjusted strength is below the
   regime's entry threshold, is reported with that reason and size 0; the rest go through
   :func:`~turbomode.smart.scanner.smart_scan` (earnings, holdings, sector, correlation, heat);
6. outputs — ``smart_scan_<date>.json`` / ``.csv`` (SignalV2 records) and
   ``smart_scan_<date>_run.json`` (regime, earnings status, notes, Kelly sources) under
   ``<data_dir>/smart``, each written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode.config import SECTOR_ETFS, Settings, SmartSettings, Tier
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError
from turbomode.io import atomic_write_json
from turbomode.smart.kelly import KellyInput, kelly_inputs
from turbomode.smart.modifiers import ModifierRule, calibrate_rules, load_rules
from turbomode.smart.portfolio import trailing_correlations
from turbomode.smart.scanner import SmartCandidate, adjusted_strength, smart_scan
from turbomode.smart.state import (
    TierState,
    UniverseState,
    load_tiers,
    load_universe,
    quarter_label,
    state_dir,
    write_tiers,
    write_universe,
)
from turbomode.smart.tiers import Curation, SymbolRank, curate_universe, rank_tiers
from turbomode.smart.types import (
    Holding,
    SignalV2,
    format_summary,
    write_signals_csv,
    write_signals_json,
)
from turbomode.store import SignalStore
from turbomode.workspace import Workspace

NO_REGIME_SIZING = "CHOPPY"  # regime multiplier 1.0: neither boosts nor cuts a size
SECTOR_MOMENTUM_BARS = 20
HOLDING_COLUMNS = ("ticker", "sector", "size", "stop_distance")


class SmartRunError(TurboModeError):
    """A Smart Scanner job cannot run (no scan yet, unknown horizon, bad holdings file)."""


# --- the trades table ----------------------------------------------------------------------


def check_horizon(settings: Settings, horizon: int | None) -> int:
    """``horizon`` (None: the settings' default) if the models are trained on it; anything
    else names the known ones."""
    horizon = settings.horizon_or_default(horizon)
    known = [int(h) for h in settings.labels.horizons]
    if horizon not in known:
        raise SmartRunError(f"unknown horizon {horizon}: the models are trained on {known} days")
    return horizon


def outcome_trades(outcomes: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Resolved BUY outcomes of ``horizon`` as a trades table (module docstring): symbol,
    sector, signal_date, exit_date, return. Rows without an exit or a return are left out."""
    cols = ["symbol", "sector", "signal_date", "exit_date", "return"]
    if outcomes.empty:
        return pd.DataFrame(columns=cols)
    o = outcomes
    keep = (
        (o["side"] == "BUY")
        & (o["horizon"].astype(int) == int(horizon))
        & o["exit_date"].notna()
        & o["side_return"].notna()
    )
    if "status" in o.columns:
        keep &= o["status"] == "resolved"
    t = o.loc[keep, ["symbol", "sector", "signal_date", "exit_date", "side_return"]]
    t = t.rename(columns={"side_return": "return"}).reset_index(drop=True)
    t["signal_date"] = pd.to_datetime(t["signal_date"])
    t["exit_date"] = pd.to_datetime(t["exit_date"])
    t["return"] = t["return"].astype(float)
    return t


def load_trades(settings: Settings, horizon: int, store: SignalStore | None = None) -> pd.DataFrame:
    """:func:`outcome_trades` of the signals store's resolved outcomes."""
    s = store or SignalStore(settings.stores.signals_url)
    s.migrate()
    return outcome_trades(s.outcomes("resolved"), horizon)


# --- ranking and curation ------------------------------------------------------------------


@dataclass(frozen=True)
class RankingResult:
    """One monthly ranking: the ranks, the counts per tier and the file written."""

    as_of: date
    horizon: int
    n_trades: int
    ranks: dict[str, SymbolRank]
    path: Path

    @property
    def counts(self) -> dict[str, int]:
        out = {t.value: 0 for t in Tier}
        for r in self.ranks.values():
            out[r.tier.value] += 1
        return out


def update_ranking(
    settings: Settings,
    as_of: date | None = None,
    horizon: int | None = None,
    store: SignalStore | None = None,
) -> RankingResult:
    """Rank every symbol with closed BUY trades on the first day of ``as_of``'s month (default:
    today) and persist it as ``tiers_<YYYY-MM>.json``; the same month twice writes the same
    file."""
    from turbomode.job_metrics import job_metrics
    from turbomode.smart.tiers import month_start

    h = check_horizon(settings, horizon)
    day = month_start(as_of or date.today())
    with job_metrics("ranking", settings.stores.pushgateway_url) as metrics:
        trades = load_trades(settings, h, store)
        ranks = rank_tiers(trades, day, settings.smart)
        path = write_tiers(settings, day, h, ranks)
        result = RankingResult(day, h, len(trades), ranks, path)
        metrics.rows.labels(stage="outcomes").inc(len(trades))
        metrics.rows.labels(stage="ranked").inc(len(ranks))
        metrics.rows.labels(stage="avoid").inc(result.counts[Tier.AVOID.value])
    return result


@dataclass(frozen=True)
class CurationResult:
    """One quarterly curation and the file written."""

    curation: Curation
    horizon: int
    n_trades: int
    path: Path

    @property
    def quarter(self) -> str:
        return quarter_label(self.curation.as_of)


def universe_symbols(settings: Settings) -> list[str]:
    """The universe's symbols from the clean store (what the nightly scan scans)."""
    from turbomode.data.universe import Universe
    from turbomode.errors import SourceError

    directory = settings.data.clean_dir
    if not (directory / "universe.parquet").exists():
        raise SourceError(f"no universe at {directory}: run `turbomode ingest` first")
    return sorted(Universe.read(directory, settings.universe).symbols)


def curate(
    settings: Settings,
    as_of: date | None = None,
    horizon: int | None = None,
    store: SignalStore | None = None,
    symbols: Sequence[str] | None = None,
) -> CurationResult:
    """Curate the universe (default: the clean store's) for ``as_of``'s quarter (default:
    today): drop the symbols ranked Avoid at each of the last ``curation_quarters`` quarter
    starts; persist it as ``universe_<YYYY>Q<q>.json``."""
    from turbomode.job_metrics import job_metrics

    h = check_horizon(settings, horizon)
    day = as_of or date.today()
    with job_metrics("curation", settings.stores.pushgateway_url) as metrics:
        names = list(symbols) if symbols is not None else universe_symbols(settings)
        trades = load_trades(settings, h, store)
        cur = curate_universe(trades, day, names, settings.smart)
        path = write_universe(settings, cur, h)
        metrics.rows.labels(stage="symbols").inc(len(names))
        metrics.rows.labels(stage="kept").inc(len(cur.kept))
        metrics.rows.labels(stage="dropped").inc(len(cur.dropped))
    return CurationResult(cur, h, len(trades), path)


# --- inputs of the smart scan --------------------------------------------------------------


def scan_document(settings: Settings, as_of: date | None = None) -> dict[str, Any]:
    """The nightly scan's document for ``as_of`` (default: ``latest_scan.json``)."""
    scans = Workspace.of(settings).scans_dir
    path = scans / ("latest_scan.json" if as_of is None else f"scan_{as_of.isoformat()}.json")
    if not path.exists():
        when = "" if as_of is None else f" for {as_of}"
        raise SmartRunError(f"no scan yet{when} at {path}: run `turbomode scan` first")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "scan_date" not in doc or "signals" not in doc:
        raise SmartRunError(f"{path}: not a scan document (no scan_date / signals)")
    return doc


def tonight_buys(doc: Mapping[str, Any], horizon: int) -> pd.DataFrame:
    """Tonight's BUY signals of ``horizon`` from a scan document, one row per symbol."""
    cols = ["symbol", "sector", "p_buy", "close"]
    frame = pd.DataFrame(doc["signals"])
    if frame.empty:
        return pd.DataFrame(columns=cols)
    day = str(doc["scan_date"])
    keep = (
        (frame["side"] == "BUY")
        & (frame["horizon"].astype(int) == horizon)
        & (frame["signal_date"].astype(str).str[:10] == day)
    )
    buys = frame.loc[keep, cols].drop_duplicates("symbol", keep="first")
    return buys.sort_values("symbol").reset_index(drop=True)


def sector_momentum(
    market: pd.DataFrame, day: date, bars: int = SECTOR_MOMENTUM_BARS
) -> dict[str, float]:
    """Each sector's ETF return over the last ``bars`` bars up to ``day`` (sector → return);
    a sector whose ETF has too little history is left out."""
    m = market.loc[pd.to_datetime(market["date"]) <= pd.Timestamp(day), ["symbol", "date", "close"]]
    out: dict[str, float] = {}
    for sector, etf in SECTOR_ETFS.items():
        closes = m.loc[m["symbol"] == etf].sort_values("date")["close"].to_numpy(dtype=float)
        if len(closes) > bars and closes[-1 - bars] > 0:
            out[sector] = float(closes[-1] / closes[-1 - bars] - 1.0)
    return out


def read_holdings(path: Path | str) -> list[Holding]:
    """Open positions from a CSV with columns ticker, sector, size, stop_distance (fractions)."""
    frame = pd.read_csv(path)
    missing = [c for c in HOLDING_COLUMNS if c not in frame.columns]
    if missing:
        raise SmartRunError(f"{path}: holdings need columns {list(HOLDING_COLUMNS)}")
    return [
        Holding(str(t), str(sec), float(z), float(d))
        for t, sec, z, d in zip(
            frame["ticker"], frame["sector"], frame["size"], frame["stop_distance"], strict=True
        )
    ]


def evidence_trades(trades: pd.DataFrame, samples: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The trades that have a feature row at signal time (the training samples' features),
    with one column per feature — what modifier evidence is measured on."""
    if trades.empty or samples.empty or "features" not in samples.columns:
        return trades.iloc[0:0]
    s = samples[(samples["horizon"].astype(int) == horizon) & samples["features"].notna()]
    if s.empty:
        return trades.iloc[0:0]
    feats = pd.DataFrame(
        [f if isinstance(f, Mapping) else json.loads(f) for f in s["features"]],
        index=s.index,
    )
    keys = s[["symbol", "signal_date"]].assign(signal_date=pd.to_datetime(s["signal_date"]))
    rows = pd.concat([keys, feats], axis=1)
    return trades.merge(rows, on=["symbol", "signal_date"], how="inner")


# --- the smart scan ------------------------------------------------------------------------


@dataclass
class SmartScanResult:
    """One smart scan: the records and everything an operator needs to trust them."""

    scan_date: date
    horizon: int
    regime: str
    regime_reason: str
    entry_threshold: float
    signals: list[SignalV2]
    earnings_status: str
    kelly: dict[str, KellyInput] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def taken(self) -> list[SignalV2]:
        return [s for s in self.signals if s.taken]

    def run_document(self) -> dict[str, Any]:
        """What the records alone do not say: regime, thresholds, earnings, notes, Kelly."""
        return {
            "scan_date": self.scan_date.isoformat(),
            "horizon": self.horizon,
            "regime": self.regime,
            "regime_reason": self.regime_reason,
            "entry_threshold": self.entry_threshold,
            "earnings_status": self.earnings_status,
            "notes": list(self.notes),
            "kelly": {
                t: {"win_rate": k.win_rate, "payoff": k.payoff, "source": k.source, "n": k.n}
                for t, k in sorted(self.kelly.items())
            },
            "n_candidates": len(self.signals),
            "n_taken": len(self.taken),
        }

    def summary(self) -> str:
        """The console summary: context lines, then :func:`format_summary`."""
        head = [
            f"Smart scan {self.scan_date} ({self.horizon}d): regime {self.regime} — "
            f"{self.regime_reason}; entry threshold {self.entry_threshold:g}",
            self.earnings_status,
            *self.notes,
        ]
        return "\n".join([*head, format_summary(self.signals)])


def _zero(sig: SignalV2, reason: str) -> SignalV2:
    return replace(sig, size=0.0, shares=0, risk=0.0, heat=0.0, skip_reason=reason)


def _rules(
    settings: Settings,
    rules_path: Path | str,
    trades: pd.DataFrame,
    day: date,
    horizon: int,
    store: SignalStore | None,
    notes: list[str],
) -> list[ModifierRule]:
    """Load the rules and measure their evidence on the trades closed before ``day``."""
    loaded = load_rules(Path(rules_path))
    notes.extend(f"modifier rule not loaded: {e}" for e in loaded.errors)
    if not loaded.rules:
        return []
    s = store or SignalStore(settings.stores.signals_url)
    with_features = evidence_trades(trades, s.training_samples(), horizon)
    end = day - timedelta(days=1)
    if with_features.empty:
        start = end
    else:
        start = min(pd.Timestamp(with_features["signal_date"].min()).date(), end)
    rules = calibrate_rules(loaded.rules, with_features, start, end, settings.smart)
    active = [r.name for r in rules if r.active]
    notes.append(
        f"modifier rules: {len(active)} of {len(rules)} active on {len(with_features)} trades "
        f"with features ({start}..{end})"
        + "".join(
            f"; {r.name} inactive: {r.evidence.reason}"
            for r in rules
            if r.evidence is not None and not r.active
        )
    )
    return rules


def _features(
    settings: Settings, tickers: list[str], vectors: pd.DataFrame | None, day: date
) -> dict[str, dict[str, float]]:
    """Each ticker's feature vector of ``day`` (the online store's, or point in time from the
    offline store for a back-dated scan, unless ``vectors`` is given); a ticker without a
    vector of ``day`` (unknown, or stale) gets an empty row, which a rule reading it refuses."""
    if vectors is None:
        from turbomode import feature_store as fs

        dated = fs.vectors_for_date(settings, tickers, day)
        stale = dated.older_than(day)
        vectors = dated.frame[~dated.frame["symbol"].isin(list(stale))]
    rows: dict[str, dict[str, float]] = {}
    for rec in vectors.to_dict("records"):
        sym = str(rec.pop("symbol"))
        rows[sym] = {str(k): float(v) for k, v in rec.items()}
    return {t: rows.get(t, {}) for t in tickers}


def _eligibility(
    candidates: Sequence[SmartCandidate],
    tiers: TierState,
    universe: UniverseState,
    rules: Sequence[ModifierRule],
    threshold: float,
    regime_name: str,
    settings: SmartSettings,
) -> dict[str, str]:
    """ticker → why it cannot be taken tonight: curated out, or adjusted strength below the
    regime's entry threshold; eligible tickers are absent."""
    reasons: dict[str, str] = {}
    for c in candidates:
        adj, _ = adjusted_strength(c.strength, tiers.tier(c.ticker), c.features, rules, settings)
        if not universe.allows(c.ticker):
            why = universe.dropped[c.ticker]
            reasons[c.ticker] = f"dropped from the universe ({universe.quarter}): {why}"
        elif adj < threshold:
            reasons[c.ticker] = (
                f"strength {adj:.1f} below the {regime_name} entry threshold {threshold:g}"
            )
    return reasons


def run_smart_scan(
    settings: Settings,
    as_of: date | None = None,
    equity: float | None = None,
    rules_path: Path | str | None = None,
    earnings_csv: Path | str | None = None,
    horizon: int | None = None,
    holdings_csv: Path | str | None = None,
    store: SignalStore | None = None,
    market: MarketData | None = None,
    vectors: pd.DataFrame | None = None,
) -> SmartScanResult:
    """The smart scan of the nightly scan's candidates (module docstring). ``equity``
    defaults to ``backtest.initial_cash``; ``store``, ``market`` (the clean store) and
    ``vectors`` (the online store's features, read only when rules are given) can be handed
    in."""
    from turbomode.data.earnings import EarningsCalendar, earnings_flags
    from turbomode.job_metrics import job_metrics
    from turbomode.risk.regime import regime_on

    h = check_horizon(settings, horizon)
    if as_of is not None and rules_path is not None and vectors is None:
        # The online store holds only the newest vector per symbol: a past night would be
        # judged on later features. Refused before any of the work.
        raise SmartRunError(
            "modifier rules read the online store's newest features, so a back-dated "
            f"smart-scan (--date {as_of}) cannot apply them point in time: run it without --rules"
        )
    s = settings.smart
    with job_metrics("smart_scan", settings.stores.pushgateway_url) as metrics:
        doc = scan_document(settings, as_of)
        day = date.fromisoformat(str(doc["scan_date"])[:10])
        buys = tonight_buys(doc, h)
        tickers = [str(t) for t in buys["symbol"]]
        notes: list[str] = []
        missing = [
            str(m).split("/")[0]
            for m in doc.get("missing_models", [])
            if str(m).split(" ")[0].endswith(f"/{h}d")
        ]
        if missing:
            notes.append(f"no {h}d production model for {', '.join(missing)}: no candidates")
        if buys.empty:
            notes.append(f"no BUY signals of the {h}d horizon tonight")
        if market is None:
            from turbomode.data.ingest import load_clean

            market = load_clean(settings)
        rd = regime_on(market.market, settings.regime, as_of=pd.Timestamp(day))
        regime = NO_REGIME_SIZING if rd.regime is None else rd.regime.value
        if rd.regime is None:
            notes.append(f"no regime ({rd.reason}): sized as {regime}, base entry threshold")
        tiers = load_tiers(settings, day)
        universe = load_universe(settings, day)
        notes += [n for n in (tiers.note, universe.note) if n]
        if tiers.horizon is not None and tiers.horizon != h:
            notes.append(f"the ranking was measured on {tiers.horizon}d outcomes, not {h}d")
        trades = load_trades(settings, h, store)
        kelly = kelly_inputs(trades, day, tickers, tiers, s)

        calendar = EarningsCalendar.from_csv(earnings_csv) if earnings_csv else None
        flags = earnings_flags(
            calendar,
            pd.DataFrame({"symbol": tickers, "signal_date": pd.Timestamp(day)}),
            before=s.earnings_window_days,
            date_col="signal_date",
        )
        soon = dict(zip(tickers, flags.flags.to_numpy(dtype=bool).tolist(), strict=True))

        rules: list[ModifierRule] = []
        features: dict[str, dict[str, float]] = {t: {} for t in tickers}
        if rules_path is None:
            notes.append("no modifier rules configured: no modifiers applied")
        else:
            rules = _rules(settings, rules_path, trades, day, h, store, notes)
            if rules and tickers:
                features = _features(settings, tickers, vectors, day)
        momentum = sector_momentum(market.market, day)
        candidates = [
            SmartCandidate(
                ticker=t,
                sector=sector,
                signal_date=day,
                price=price,
                strength=float(np.clip(100.0 * p_buy, 0.0, 100.0)),
                win_rate=kelly[t].win_rate,
                payoff=kelly[t].payoff,
                features=features[t],
                sector_momentum=momentum.get(sector),
                earnings_soon=soon[t],
            )
            for t, sector, p_buy, price in zip(
                tickers,
                buys["sector"].astype(str),
                buys["p_buy"].astype(float),
                buys["close"].astype(float),
                strict=True,
            )
        ]
        threshold_name = regime if rd.regime is not None else "base (no regime)"
        reasons = _eligibility(
            candidates, tiers, universe, rules, rd.entry_threshold, threshold_name, s
        )

        eligible = [c for c in candidates if c.ticker not in reasons]
        ineligible = [c for c in candidates if c.ticker in reasons]
        held = read_holdings(holdings_csv) if holdings_csv else []
        cash = float(equity if equity is not None else settings.backtest.initial_cash)
        names = {c.ticker for c in eligible} | {x.ticker for x in held}
        corr = None
        if len(names) >= 2:  # tonight's takes join the book, so they correlate too
            px = market.prices.loc[market.prices["symbol"].isin(names)]
            corr = trailing_correlations(px, day, s.correlation_lookback, s.correlation_min_periods)
        signals = smart_scan(
            eligible,
            regime=regime,
            tiers=tiers.tiers,
            rules=rules,
            holdings=held,
            equity=cash,
            correlations=corr,
            settings=s,
        )
        if ineligible:  # strengths and plan for the report; never sized, never in the book
            rest = smart_scan(
                ineligible,
                regime=regime,
                tiers=tiers.tiers,
                rules=rules,
                holdings=[],
                equity=cash,
                settings=s,
            )
            signals += [_zero(x, reasons[x.symbol]) for x in rest]

        result = SmartScanResult(
            scan_date=day,
            horizon=h,
            regime=regime,
            regime_reason=rd.reason,
            entry_threshold=rd.entry_threshold,
            signals=signals,
            earnings_status=flags.status,
            kelly=kelly,
            notes=notes,
        )
        result.files = write_smart_scan(settings, result)
        metrics.rows.labels(stage="candidates").inc(len(candidates))
        metrics.rows.labels(stage="taken").inc(len(result.taken))
        metrics.rows.labels(stage="skipped").inc(len(signals) - len(result.taken))
    return result


def write_smart_scan(settings: Settings, result: SmartScanResult) -> dict[str, str]:
    """``smart_scan_<date>.json`` / ``.csv`` (the records) and ``smart_scan_<date>_run.json``
    (the context) under ``<data_dir>/smart``, each atomically."""
    stem = state_dir(settings) / f"smart_scan_{result.scan_date.isoformat()}"
    files = {
        "json": stem.with_suffix(".json"),
        "csv": stem.with_suffix(".csv"),
        "run": stem.with_name(stem.name + "_run.json"),
    }
    write_signals_json(result.signals, files["json"])
    write_signals_csv(result.signals, files["csv"])
    atomic_write_json(result.run_document(), files["run"])
    return {k: str(v) for k, v in files.items()}
