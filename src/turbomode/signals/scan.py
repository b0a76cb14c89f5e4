"""The nightly scan: production models → tonight's signals, risk levels and the book.

For scan date D (the newest bar in the clean store, after its close):

1. **Book.** Positions as they stood before D's run (:meth:`SignalStore.positions_before`, so
   a re-run for D starts from the same book and replaces D's run).
2. **Act on last night.** Decisions made from the close of the previous scan act on bar D,
   never on the close that produced them: signal exits decided last night fill at D's open;
   last night's fresh signals open positions at D's open (inside the ±entry range, one
   position per symbol, the most confident horizon). Then every open position lives through
   bar D (stop, partial exits, target, trailing stop, expiry; :mod:`turbomode.risk.positions`).
3. **Score.** Every symbol's newest feature vector from Feast's online store → the production
   ensemble of its (sector, horizon) from the registry (an LRU cache keeps all 33 loaded) →
   P(SELL), P(HOLD), P(BUY). One batch per (sector, horizon); a model with sequence
   learners also reads its symbols' last days dated ≤ D from the offline store
   (:func:`turbomode.feature_store.recent_rows`). A symbol without features,
   without a bar on D, or whose sector has no production model at all is logged with the
   reason and skipped; the run completes and counts successes and failures. A sector with
   no production model gets no signals: the summary says so instead of inventing them.
4. **Rules.** Entry thresholds (fixed, or a top quantile with a floor), ATR stop/target
   (:mod:`turbomode.risk.levels`), one signal per (symbol, horizon), decay and capacity
   (:mod:`turbomode.signals.rules`), the sector overview.
5. **Exits by signal.** Tonight's call is recorded on each open position; one that passes
   hysteresis and persistence is marked to exit at the next bar's open.
6. **Store.** One transaction (:meth:`SignalStore.write_scan`), then ``latest_scan.json``
   (atomic) and a CSV of the active signals.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError
from turbomode.io import atomic_path, atomic_write_json
from turbomode.labels import CLASS_NAMES
from turbomode.logs import event
from turbomode.models.drift import KeyDrift
from turbomode.models.drift import summary as drift_summary
from turbomode.models.ensemble import TrainingDataError
from turbomode.models.loading import Scorer, class_prior, load_ensemble
from turbomode.records.positions import Position, PositionEvent
from turbomode.records.signals import Signal
from turbomode.risk.levels import levels_arrays
from turbomode.risk.positions import (
    manage_day,
    open_position,
    record_signal_event,
    should_exit_on_signal,
    signal_exit,
)
from turbomode.signals import drift as scan_drift
from turbomode.signals import explain as signal_explain
from turbomode.signals import rules
from turbomode.store import SignalStore
from turbomode.workspace import Workspace

log = logging.getLogger("turbomode.signals.scan")
ATR_FEATURE = "atr_pct_14"
"""ATR(14) as a share of the close: the price level is not a feature (adjusted prices carry
later splits into the past), so the stop's ATR is this share times the scan bar's close."""
SELL_I, HOLD_I, BUY_I = 0, 1, 2


class ScanError(TurboModeError):
    """The scan cannot run at all (no clean store, no online features, no date)."""


class NoNewBarError(ScanError):
    """The newest bar is not newer than the last scan's: no new data arrived, so there is
    nothing to scan (re-scanning would replace that night's run with the same result)."""


def model_key(sector: str, horizon: int) -> str:
    """The registry key of a (sector, horizon) ensemble, as ``turbomode train`` writes it."""
    return f"{sector}/{horizon}d"


class ModelCache:
    """Production ensembles by registry key, least recently used evicted beyond ``maxsize``.

    Entries are keyed by (key, version), so a promotion or rollback between scans loads the
    new production model instead of serving a stale one; loading it drops the key's other
    versions, so a superseded model cannot hold a slot and evict a live one.
    """

    def __init__(
        self,
        registry: Any,
        maxsize: int = 33,
        threads: int = 1,
        inference: Literal["fast", "native"] = "fast",
    ) -> None:
        self.registry = registry
        self.maxsize = maxsize
        self.threads = threads
        self.inference: Literal["fast", "native"] = inference
        self._models: OrderedDict[tuple[str, str], Scorer] = OrderedDict()

    def get(self, key: str) -> tuple[Scorer, str] | None:
        """The production ensemble of ``key`` and its version, or None without production."""
        version = self.registry.production(key)
        if version is None:
            return None
        slot = (key, version)
        model = self._models.get(slot)
        if model is None:
            directory, _ = self.registry.load(key, version)
            model = load_ensemble(directory, threads=self.threads, inference=self.inference)
            for stale in [s for s in self._models if s[0] == key]:
                del self._models[stale]
            self._models[slot] = model
            while len(self._models) > self.maxsize:
                self._models.popitem(last=False)
        self._models.move_to_end(slot)
        return model, version

    def __len__(self) -> int:
        return len(self._models)


@dataclass
class ScanResult:
    """Everything one scan decided; what the CLI prints and the dashboard shows."""

    scan_date: date
    run_id: int
    n_symbols: int
    scores: pd.DataFrame
    fresh: list[Signal]
    active: list[Signal]
    selection: rules.SelectionResult
    failures: dict[str, str]
    missing_models: list[str]
    positions: dict[str, Position]
    events: list[PositionEvent]
    sectors: pd.DataFrame
    thresholds: dict[str, float]
    pending_exits: list[str] = field(default_factory=list)
    stale_features: int = 0
    feature_source: str = "online"
    token: str = ""
    previous_scan_date: date | None = None
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    drift: list[KeyDrift] = field(default_factory=list)
    explanations: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    """(symbol, horizon) → explanation of each active signal, from the night it was issued."""
    explain_seconds: float = 0.0

    @property
    def n_scored(self) -> int:
        return self.n_symbols - len(self.failures)


# --------------------------------------------------------------------------- scoring


def score_universe(
    vectors: pd.DataFrame,
    members: pd.DataFrame,
    bars: pd.DataFrame,
    models: ModelCache,
    horizons: Sequence[int],
    history: HistoryReader | None = None,
    scan_date: date | None = None,
) -> tuple[pd.DataFrame, dict[str, str], list[str], dict[str, str]]:
    """Probabilities for every (symbol, horizon) with a production model, batched per
    (sector, horizon).

    ``vectors``: symbol + model features (online store); ``members``: symbol, sector,
    cap_class; ``bars``: symbol, open, high, low, close of the scan date. A model with
    sequence learners (``window_days`` > 0) also gets its symbols' last days from
    ``history`` (symbols, days → rows dated ≤ ``scan_date``); tree-only models read nothing
    more. Returns the scores (the columns :func:`rules.entry_candidates` needs), failures by
    symbol, registry keys without a production model, and the versions used by key. The
    frame form of :func:`score_rows`.
    """
    symbols = members["symbol"].to_numpy()
    feature_cols = [c for c in vectors.columns if c != "symbol"]
    at = pd.Index(vectors["symbol"]).get_indexer(symbols)
    if list(vectors.columns[1:]) == feature_cols:  # symbol first: a slice, no name lookup
        matrix = vectors.iloc[:, 1:].to_numpy()
    else:
        matrix = vectors[feature_cols].to_numpy()
    X = np.full((len(symbols), len(feature_cols)), np.nan, dtype=matrix.dtype)
    X[at >= 0] = matrix[at[at >= 0]]
    bar_at = pd.Index(bars["symbol"]).get_indexer(symbols)
    close = np.full(len(symbols), np.nan)
    close[bar_at >= 0] = bars["close"].to_numpy(dtype=float)[bar_at[bar_at >= 0]]
    columns, failures, missing, versions = score_rows(
        symbols,
        members["sector"].to_numpy(),
        members["cap_class"].to_numpy(),
        X,
        {c: i for i, c in enumerate(feature_cols)},
        close,
        models,
        horizons,
        history=history,
        scan_date=scan_date,
    )
    if columns is None:
        scores = pd.DataFrame(columns=[*rules.SCORE_COLUMNS, "model_version"])
    else:
        scores = pd.DataFrame(columns)
    return scores, failures, missing, versions


def score_rows(
    symbols: np.ndarray,
    sector_of: np.ndarray,
    cap_of: np.ndarray,
    X: np.ndarray,
    column: Mapping[str, int],
    close: np.ndarray,
    models: ModelCache,
    horizons: Sequence[int],
    history: HistoryReader | None = None,
    scan_date: date | None = None,
) -> tuple[dict[str, np.ndarray] | None, dict[str, str], list[str], dict[str, str]]:
    """:func:`score_universe` on arrays aligned by row: symbol, sector, cap class, feature
    matrix (``column`` maps a feature's name to its column), close (NaN without a bar);
    ``history`` and ``scan_date`` as there.

    The one implementation of scoring; the service calls it directly for a few rows, where
    building and merging frames was most of a request's time (docs/serving.md). Returns the
    score columns (None when nothing was scored), failures, missing keys and versions.
    """
    failures: dict[str, str] = {}
    no_features = np.isnan(X).all(axis=1) if X.shape[1] else np.ones(len(symbols), bool)
    for sym in symbols[no_features]:
        failures[sym] = "no features in the online store"
    no_bar = ~no_features & np.isnan(close)
    for sym in symbols[no_bar]:
        failures[sym] = "no price bar on the scan date"
    atr = X[:, column[ATR_FEATURE]].astype(float)
    no_atr = ~no_features & ~no_bar & ~(atr > 0)
    for sym in symbols[no_atr]:
        failures[sym] = f"no usable {ATR_FEATURE} (warm-up or bad data): no stop can be set"
    ok = np.flatnonzero(~(no_features | no_bar | no_atr))

    parts: list[dict[str, np.ndarray]] = []
    missing: list[str] = []
    versions: dict[str, str] = {}
    modelled: set[str] = set()
    groups = [
        (str(sector), int(horizon), ok[sector_of[ok] == sector])
        for sector in sorted(set(sector_of[ok]))
        for horizon in sorted(set(horizons))
    ]
    for sector, horizon, rows in groups:
        key = model_key(sector, horizon)
        try:
            found = models.get(key)
        except Exception as exc:  # a damaged artifact: that model is out, the scan goes on
            event(log, "scan.model_failed", key=key, error=str(exc))
            found = None
            missing.append(f"{key} (failed to load: {exc})")
        if found is None:
            if not any(m.startswith(key) for m in missing):
                missing.append(key)
            continue
        model, version = found
        try:
            if getattr(model, "window_days", 0) > 0:  # stand-ins without it: trees
                frame = pd.DataFrame(X[rows], columns=sorted(column, key=column.__getitem__))
                frame.insert(0, "symbol", symbols[rows])
                proba = _predict_with_history(model, frame, history, scan_date)
            else:
                lacking = [c for c in model.features if c not in column]
                if lacking:
                    raise TrainingDataError(
                        f"feature frame lacks {len(lacking)} model feature(s): {lacking[:10]}"
                    )
                proba = model.predict_proba(X[np.ix_(rows, [column[c] for c in model.features])])
        except Exception as exc:  # e.g. a model trained on other features: out, scan goes on
            event(log, "scan.model_failed", key=key, error=str(exc))
            missing.append(f"{key} (failed to predict: {exc})")
            continue
        versions[key] = version
        prior = class_prior(model)
        n = len(rows)
        parts.append(
            {
                "symbol": symbols[rows],
                "sector": np.full(n, sector, dtype=object),
                "cap_class": cap_of[rows],
                "horizon": np.full(n, horizon, dtype=np.int64),
                "p_buy": proba[:, BUY_I],
                "p_hold": proba[:, HOLD_I],
                "p_sell": proba[:, SELL_I],
                "close": close[rows],
                "prior_buy": np.full(n, prior[BUY_I], dtype=float),
                "prior_sell": np.full(n, prior[SELL_I], dtype=float),
                "atr": atr[rows] * close[rows],
                "model_version": np.full(n, version, dtype=object),
            }
        )
        modelled.update(symbols[rows])
    for i in ok:
        if symbols[i] not in modelled:
            failures[symbols[i]] = f"no production model for {sector_of[i]} (any horizon)"
    if not parts:
        return None, failures, missing, versions
    if len(parts) == 1:  # one (sector, horizon), as a single /predict has
        scores = parts[0]
    else:
        scores = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    bad = rules.invalid_rows(scores)
    if bad.any():
        for sym in scores["symbol"][bad]:
            failures[sym] = "model returned invalid probabilities"
        scores = {c: v[~bad] for c, v in scores.items()}
    return scores, failures, missing, versions


HISTORY_UNAVAILABLE = "feature history unavailable"
"""How a failed history read starts its reason (the service answers it with 503)."""

HistoryReader = Callable[[Sequence[str], int], pd.DataFrame]
"""(symbols, days) → each symbol's last ``days`` feature rows dated ≤ the scan date."""


def _predict_with_history(
    model: Scorer, rows: pd.DataFrame, history: HistoryReader | None, scan_date: date | None
) -> np.ndarray:
    """A sequence model's probabilities on tonight's rows, its windows completed from the
    symbols' earlier rows (point in time: the reader returns none after the scan date)."""
    if history is None or scan_date is None:
        raise ScanError(
            f"the model reads {model.window_days} days per stock and no history reader was given"
        )
    try:
        earlier = history(list(rows["symbol"]), model.window_days)
    except Exception as exc:
        raise ScanError(f"{HISTORY_UNAVAILABLE}: {type(exc).__name__}: {exc}") from exc
    day = pd.Timestamp(scan_date)
    late = earlier[pd.to_datetime(earlier["date"]) > day] if len(earlier) else earlier
    if len(late):  # the reader's contract; a look-ahead is refused, never scored
        raise ScanError(f"history rows after the scan date {scan_date}: refusing a look-ahead")
    # every column of tonight's vectors: sequence features need not be model features
    return model.predict_proba(rows.assign(date=day), history=earlier)


def fresh_signals(
    scores: pd.DataFrame | Mapping[str, np.ndarray],
    scan_date: date,
    settings: Settings,
    limits: Mapping[str, float],
) -> list[Signal]:
    """Entry candidates at ``limits`` (:func:`rules.entry_thresholds`) with stop, target and
    levels, as Signal records.

    ``scores``: a frame (the scan) or a mapping of equal-length arrays (the service's few
    rows). Both go through the same array rules (:func:`rules.night_entries`,
    :func:`levels_arrays`, :func:`rules.signals_from_columns`): on one row, frames were most
    of a request's time."""
    if isinstance(scores, pd.DataFrame):
        if scores.empty:
            return []
        columns: Mapping[str, np.ndarray] = {str(c): scores[c].to_numpy() for c in scores}
    else:
        columns = scores
    if len(columns["symbol"]) == 0:
        return []
    cand = rules.night_entries(columns, settings.signals, limits)
    if len(cand["symbol"]) == 0:
        return []
    lv = levels_arrays(cand, settings.risk)
    for c in rules.LEVEL_COLUMNS:
        cand[c] = lv[c]
    versions = {
        (str(sector), int(horizon)): str(version)
        for sector, horizon, version in zip(
            cand["sector"].tolist(),
            cand["horizon"].tolist(),
            cand["model_version"].tolist(),
            strict=True,
        )
    }
    return rules.signals_from_columns(cand, scan_date, versions)


# --------------------------------------------------------------------------- the book


def _bar(bars: pd.DataFrame, symbol: str) -> tuple[float, float, float, float] | None:
    """(open, high, low, close) with high/low widened to cover open and close: validation
    accepts bars a rounding error outside their range (adjusted prices often are, by 1e-15),
    and position management would refuse such a bar and sink the whole scan."""
    if symbol not in bars.index:
        return None
    o, h, lo, c = map(float, np.asarray(bars.loc[symbol, ["open", "high", "low", "close"]]))
    return o, max(h, o, c), min(lo, o, c), c


def _history_signals(store: SignalStore, scan_date: date) -> list[Signal]:
    """The active set recorded by the run of ``scan_date``."""
    hist = store.signal_history(since=scan_date)
    if hist.empty:
        return []
    hist = hist[pd.to_datetime(hist["scan_date"]).dt.date == scan_date]
    cols = list(rules.SIGNAL_FIELDS)
    frame = hist[cols].copy()
    frame["signal_date"] = pd.to_datetime(frame["signal_date"]).dt.date
    out = []
    for rec in frame.to_dict(orient="records"):
        values = {str(k): v for k, v in rec.items()}
        values["horizon"] = int(values["horizon"])
        out.append(Signal(**values))
    return out


def manage_book(
    book: dict[str, Position],
    bars: pd.DataFrame,
    scan_date: date,
    entries: Sequence[Signal],
    pending_exits: Sequence[str],
    settings: Settings,
) -> tuple[dict[str, Position], list[PositionEvent]]:
    """Act on last night's decisions at bar D's open, then live through bar D.

    Only a symbol flat at D's open (signal exits fill first) takes a new position: one still
    held at the open and closed later in bar D (stop, target, expiry) would otherwise hold
    two positions at once.
    """
    book = {k: replace(v, recent_signals=list(v.recent_signals)) for k, v in book.items()}
    events: list[PositionEvent] = []
    for sym in pending_exits:
        pos, bar = book.get(sym), _bar(bars, sym)
        if pos is not None and pos.state != "flat" and bar is not None:
            book[sym], ev = signal_exit(pos, scan_date, bar[0])
            events += ev
    held_at_open = {sym for sym, pos in book.items() if pos.state != "flat"}
    for sym, pos in list(book.items()):
        bar = _bar(bars, sym)
        if pos.state == "flat" or bar is None:
            continue
        book[sym], ev = manage_day(pos, scan_date, *bar, settings.risk)
        events += ev
    best: dict[str, Signal] = {}
    for s in entries:
        if s.symbol not in best or s.confidence > best[s.symbol].confidence:
            best[s.symbol] = s
    for sym, sig in sorted(best.items()):
        current = book.get(sym, Position(symbol=sym))
        bar = _bar(bars, sym)
        if sym in held_at_open or current.state != "flat" or bar is None:
            continue
        opened, ev = open_position(sig, scan_date, bar[0], settings.risk)
        if not ev:
            continue
        opened.version = current.version
        opened.recent_signals = list(current.recent_signals)
        opened.persistence = current.persistence
        managed, ev2 = manage_day(opened, scan_date, *bar, settings.risk, bars_held=1)
        book[sym] = managed
        events += ev + ev2
    return book, events


def record_calls(
    book: dict[str, Position],
    scores: pd.DataFrame,
    scan_date: date,
    settings: Settings,
    limits: dict[str, float],
) -> tuple[dict[str, Position], list[PositionEvent], list[str]]:
    """Tonight's call (BUY / SELL / HOLD at tonight's entry thresholds, read as the entry
    rule reads them: :func:`rules.night_calls`) on each open position's horizon, and the
    positions whose exit passed hysteresis and persistence: they exit at the next bar's
    open."""
    events: list[PositionEvent] = []
    exits: list[str] = []
    if scores.empty:
        return book, events, exits
    probs = {
        (str(sym), int(h)): (float(pb), float(ps), call)
        for sym, h, pb, ps, call in zip(
            scores["symbol"].tolist(),
            scores["horizon"].tolist(),
            scores["p_buy"].tolist(),
            scores["p_sell"].tolist(),
            rules.night_calls(scores, settings.signals, limits),
            strict=True,
        )
    }
    for sym, pos in list(book.items()):
        if pos.state == "flat" or pos.horizon is None or (sym, pos.horizon) not in probs:
            continue
        p_buy, p_sell, call = probs[(sym, pos.horizon)]
        pos, ev = record_signal_event(pos, scan_date, call, p_buy, p_sell, settings.signals)
        book[sym] = pos
        events += ev
        if should_exit_on_signal(pos, p_buy, p_sell, settings.signals):
            exits.append(sym)
    return book, events, sorted(exits)


# --------------------------------------------------------------------------- the scan


def run_scan(
    settings: Settings,
    store: SignalStore | None = None,
    models: ModelCache | None = None,
    scan_date: date | None = None,
    vectors: pd.DataFrame | None = None,
    on_stage: Callable[[str], None] | None = None,
    market: MarketData | None = None,
    vector_dates: dict[str, date | None] | None = None,
    measure_drift: bool = True,
    explain: bool = True,
    history: HistoryReader | None = None,
) -> ScanResult:
    """Scan the universe for ``scan_date`` (default: the newest bar) and record it.

    ``market`` (default: the clean store) and ``vectors`` (default: the online store) let
    replay hand in a simulated day's data. ``measure_drift`` compares the night's features and
    scores with each model's training reference (:mod:`turbomode.signals.drift`) and pushes it.
    ``explain`` explains the signals issued tonight (:mod:`turbomode.signals.explain`).
    ``history`` (default: the offline store, point in time) gives models with sequence
    learners their symbols' last days; it is called only for such models.
    """
    from turbomode import feature_store as fs
    from turbomode.data.ingest import load_clean
    from turbomode.job_metrics import job_metrics
    from turbomode.models.registry import ModelRegistry

    stage = on_stage or (lambda _s: None)
    t0 = time.perf_counter()
    with job_metrics("scan", settings.stores.pushgateway_url) as metrics:
        stage("loading the clean store")
        md = market if market is not None else load_clean(settings)
        prices = md.prices
        newest_bar = pd.Timestamp(prices["date"].max())
        metrics.gauge("turbomode_scan_bar_timestamp_seconds").set(fs.market_close(newest_bar))
        day = pd.Timestamp(scan_date) if scan_date else newest_bar
        store = store or SignalStore(settings.stores.signals_url)
        store.migrate()
        runs = store.runs()
        scanned = sorted(pd.to_datetime(runs["scan_date"]).dt.date) if len(runs) else []
        new_bar = not scanned or newest_bar.date() > scanned[-1]
        metrics.gauge("turbomode_scan_new_bar").set(1 if new_bar else 0)
        if scan_date is None and not new_bar:
            raise NoNewBarError(
                f"no new bar since the last scan: the newest bar in the clean store is "
                f"{newest_bar.date()} and the last scan was {scanned[-1]}; did the ingest "
                "receive the day's data? (pass --date to re-run a date on purpose)"
            )
        if scanned and day.date() < scanned[-1]:
            # Refused before any scoring: the store would refuse to write it afterwards.
            raise ScanError(
                f"scan date {day.date()} is before the latest recorded scan {scanned[-1]}: "
                "scans only move forward; to re-run past nights, replay them into a fresh "
                "directory (turbomode replay --start … --end … --work DIR)"
            )
        todays = prices[prices["date"] == day]
        if todays.empty:
            raise ScanError(f"no prices on the scan date {day.date()} in the clean store")
        bars = todays.set_index("symbol")[["open", "high", "low", "close"]]
        members = md.universe.members[["symbol", "sector", "cap_class"]]
        symbols = sorted(members["symbol"])
        if vectors is None:
            stage("reading features")
            try:
                dated = fs.vectors_for_date(settings, symbols, day.date())
            except fs.FeatureStoreError as exc:
                raise ScanError(str(exc)) from exc
        else:  # handed in (replay): dated by the caller, or taken as the scan date's
            dates = vector_dates or dict.fromkeys(vectors["symbol"].astype(str), day.date())
            dated = fs.DatedVectors(vectors, dict(dates), "given")
        newer = dated.newer_than(day.date())
        if newer:  # cannot happen through vectors_for_date; refuse rather than look ahead
            raise ScanError(
                f"{len(newer)} feature vector(s) are newer than the scan date {day.date()} "
                f"(e.g. {newer[0]} of {dated.dates[newer[0]]}): refusing a look-ahead"
            )
        stale = dated.older_than(day.date())
        vectors = dated.frame
        if stale:
            feature_cols = [c for c in vectors.columns if c != "symbol"]
            vectors = vectors.copy()
            vectors.loc[vectors["symbol"].isin(list(stale)), feature_cols] = np.nan
        metrics.gauge("turbomode_scan_stale_features").set(len(stale))
        if models is None:
            registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
            models = ModelCache(
                registry,
                threads=max(1, int(settings.compute.cpus_per_task)),
                inference=settings.compute.inference,
            )
        stage("scoring")
        scores, failures, missing, versions = score_universe(
            vectors,
            members,
            bars.reset_index(),
            models,
            settings.labels.horizons,
            history=history or offline_history(settings, day.date()),
            scan_date=day.date(),
        )
        failures.update({s: r for s, r in stale.items() if s in set(members["symbol"])})
        limits = rules.entry_thresholds(settings.signals, scores)
        fresh = fresh_signals(scores, day.date(), settings, limits)
        drifts: list[KeyDrift] = []
        if measure_drift and versions:
            stage("measuring drift")
            drifts = _measure_drift(
                settings, day.date(), members, vectors, prices, models, versions
            )
            scan_drift.export(metrics, drifts)

        stage("managing the book")
        earlier = [d for d in scanned if d < day.date()]
        prev = store.run(earlier[-1]) if earlier else None
        existing = _history_signals(store, prev.scan_date) if prev else []
        if existing:  # a signal whose outcome is recorded has left the active set
            done = store.resolved_keys(since=min(s.signal_date for s in existing))
            existing = [s for s in existing if (s.symbol, s.horizon, s.signal_date) not in done]
        entries = [s for s in existing if prev and s.signal_date == prev.scan_date]
        pending = list(prev.summary.get("pending_exits", [])) if prev else []
        before = store.positions_before(day.date())
        book, events = manage_book(before, bars, day.date(), entries, pending, settings)
        book, call_events, exits = record_calls(book, scores, day.date(), settings, limits)
        events += call_events

        selection = rules.select_active(existing, fresh, day.date(), settings.signals)
        active = selection.active
        stage("explaining signals")
        t_explain = time.perf_counter()
        issued = [s for s in active if s.signal_date == day.date()]
        explanations = _explain_signals(issued, vectors, models) if explain and issued else {}
        explain_seconds = time.perf_counter() - t_explain
        carried = [s for s in active if s.signal_date < day.date()]
        if carried:
            stored = store.explanations(since=min(s.signal_date for s in carried))
            for s in carried:
                if (s.symbol, s.horizon, s.signal_date) in stored:
                    explanations[s.key] = stored[(s.symbol, s.horizon, s.signal_date)]
        sectors = rules.sector_overview(active, day.date(), settings.signals)
        changed = sorted({e.symbol for e in events})
        summary = {
            "thresholds": limits,
            "threshold_mode": settings.signals.threshold_mode,
            "n_fresh": len(fresh),
            "n_active": len(active),
            "missing_models": missing,
            "pending_exits": exits,
            "sectors_without_models": sorted(
                {m.split("/")[0] for m in missing} - {str(s) for s in scores["sector"].unique()}
                if len(scores)
                else {m.split("/")[0] for m in missing}
            ),
            "n_events": len(events),
            "stale_features": len(stale),
            "feature_source": dated.source,
            "newest_bar": str(newest_bar.date()),
            "new_bar": bool(new_bar),
            "drift": _jsonable_records(drift_summary(drifts)),
        }
        result = ScanResult(
            scan_date=day.date(),
            run_id=0,
            n_symbols=len(symbols),
            scores=scores,
            fresh=fresh,
            active=active,
            selection=selection,
            failures=failures,
            missing_models=missing,
            positions=book,
            events=events,
            sectors=sectors,
            thresholds=limits,
            pending_exits=exits,
            stale_features=len(stale),
            feature_source=dated.source,
            previous_scan_date=prev.scan_date if prev else None,
            drift=drifts,
            explanations=explanations,
            explain_seconds=explain_seconds,
        )
        # The night's document is committed with the run, so latest_scan.json can always be
        # derived from the store (latest_document repairs it after a crash between the two).
        document = scan_document(result, settings)
        document["token"] = uuid.uuid4().hex
        summary["document"] = {k: v for k, v in document.items() if k != "run_id"}
        stage("writing the signals store")
        run_id = store.write_scan(
            day.date(),
            active,
            failures=failures,
            positions=[book[s] for s in changed],
            events=events,
            summary=summary,
            model_versions=versions,
            n_symbols=len(symbols),
            explanations={s.key: explanations[s.key] for s in issued if s.key in explanations},
        )
        result.run_id = run_id
        result.token = document["token"]
        result.files = write_outputs(result, settings)
        result.seconds = time.perf_counter() - t0
        metrics.rows.labels(stage="scored").inc(result.n_scored)
        metrics.rows.labels(stage="failed").inc(len(failures))
        metrics.rows.labels(stage="signals").inc(len(active))
    event(
        log,
        "scan.done",
        scan_date=str(result.scan_date),
        run_id=run_id,
        scored=result.n_scored,
        failed=len(failures),
        stale_features=len(stale),
        fresh=len(fresh),
        active=len(active),
        events=len(events),
        seconds=round(result.seconds, 2),
    )
    for sym, reason in sorted(failures.items()):
        event(log, "scan.skipped", symbol=sym, reason=reason)
    return result


def offline_history(settings: Settings, day: date) -> HistoryReader:
    """The history reader of one scan (or one service request): the offline store's rows
    dated ≤ ``day`` (:func:`turbomode.feature_store.recent_rows`), memoized by (symbols,
    days) so the horizons of one sector share a read."""
    from turbomode import feature_store as fs

    seen: dict[tuple[tuple[str, ...], int], pd.DataFrame] = {}

    def read(symbols: Sequence[str], days: int) -> pd.DataFrame:
        key = (tuple(sorted(symbols)), days)
        if key not in seen:
            seen[key] = fs.recent_rows(settings, key[0], day, days)
        return seen[key]

    return read


def _measure_drift(
    settings: Settings,
    day: date,
    members: pd.DataFrame,
    vectors: pd.DataFrame,
    prices: pd.DataFrame,
    models: ModelCache,
    versions: dict[str, str],
) -> list[KeyDrift]:
    """The night's drift; a monitoring failure is logged and never fails the scan."""
    try:
        return scan_drift.drift_for(
            settings,
            day,
            members,
            vectors,
            pd.DatetimeIndex(prices["date"].unique()),
            models.registry,
            models,
            versions,
        )
    except Exception as exc:  # monitoring must not stop the night's signals
        event(log, "scan.drift_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
        return []


def _explain_signals(
    issued: Sequence[Signal], vectors: pd.DataFrame, models: ModelCache
) -> dict[tuple[str, int], dict[str, Any]]:
    """Explanations of tonight's issued signals, one batch per (sector, horizon), against
    tonight's vectors; a failure is logged and never fails the scan."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    groups: dict[tuple[str, int], list[str]] = {}
    for s in issued:
        groups.setdefault((s.sector, s.horizon), []).append(s.symbol)
    for (sector, horizon), symbols in sorted(groups.items()):
        key = model_key(sector, horizon)
        try:
            found = models.get(key)
            if found is None:
                continue
            model, version = found
            rows = vectors[vectors["symbol"].isin(symbols)]
            for symbol, payload in signal_explain.explain_rows(
                model, rows, vectors, key, version
            ).items():
                out[(symbol, horizon)] = payload
        except Exception as exc:  # an explanation must not stop the night's signals
            event(log, "scan.explain_failed", logging.WARNING, key=key, error=str(exc))
    return out


def _jsonable_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-able dicts, NaN as null."""
    return [
        {str(k): None if isinstance(v, float) and not np.isfinite(v) else v for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def scan_document(result: ScanResult, settings: Settings) -> dict[str, Any]:
    """The JSON the dashboard and downstream jobs read (``latest_scan.json``)."""
    frame = rules.signals_to_frame(result.active, result.scan_date, settings.signals)
    if len(frame):
        frame["signal_date"] = frame["signal_date"].dt.date.astype(str)
        why = result.explanations
        frame["explanation"] = pd.Series(
            [
                signal_explain.summary(why[(s, int(h))]) if (s, int(h)) in why else None
                for s, h in zip(frame["symbol"], frame["horizon"], strict=True)
            ],
            index=frame.index,
            dtype=object,
        )
    open_positions = [
        {
            "symbol": p.symbol,
            "state": p.state,
            "horizon": p.horizon,
            "entry_date": str(p.entry_date),
            "entry_price": p.entry_price,
            "stop": p.stop,
            "target": p.target,
            "size": p.size,
        }
        for p in sorted(result.positions.values(), key=lambda p: p.symbol)
        if p.state != "flat"
    ]
    return {
        "scan_date": str(result.scan_date),
        "run_id": result.run_id,
        "n_symbols": result.n_symbols,
        "n_scored": result.n_scored,
        "n_failed": len(result.failures),
        "stale_features": result.stale_features,
        "feature_source": result.feature_source,
        "previous_scan_date": str(result.previous_scan_date) if result.previous_scan_date else None,
        "thresholds": result.thresholds,
        "missing_models": result.missing_models,
        "signals": frame.replace({np.nan: None}).to_dict(orient="records"),
        "sectors": result.sectors.replace({np.nan: None}).to_dict(orient="records"),
        "positions": open_positions,
        "pending_exits": result.pending_exits,
        "failures": result.failures,
        "labels": CLASS_NAMES,
        **({"token": result.token} if result.token else {}),
    }


def write_outputs(result: ScanResult, settings: Settings) -> dict[str, str]:
    """``latest_scan.json`` and the night's CSV, each written atomically."""
    out_dir = Workspace.of(settings).scans_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = scan_document(result, settings)
    latest = out_dir / "latest_scan.json"
    atomic_write_json(doc, out_dir / f"scan_{result.scan_date}.json")
    atomic_write_json(doc, latest)
    csv = out_dir / f"signals_{result.scan_date}.csv"
    # The columns are given so a night without signals still writes a header: an empty file
    # would make pandas.read_csv and most CSV readers downstream fail.
    columns = rules.signals_to_frame([], result.scan_date, settings.signals).columns
    with atomic_path(csv) as tmp:
        pd.DataFrame(doc["signals"], columns=columns).to_csv(tmp, index=False)
    return {"json": str(latest), "csv": str(csv)}


def latest_document(settings: Settings, store: SignalStore | None = None) -> dict[str, Any]:
    """The newest committed scan's document (``latest_scan.json``), from the store's truth.

    ``latest_scan.json`` is written after the store's transaction commits; a crash between
    the two would leave it a night behind. Each run carries its document, so when the file
    lags (or is missing, or unreadable) it is rewritten from the store, atomically, and the
    committed night is what callers see."""
    path = Workspace.of(settings).latest_scan
    try:
        on_disk: dict[str, Any] | None = json.loads(path.read_text())
    except (OSError, ValueError):
        on_disk = None
    own = store is None
    store = store or SignalStore(settings.stores.signals_url)
    try:
        runs = store.runs()
        if runs.empty:
            if on_disk is None:
                raise ScanError(f"no scan yet at {path}: run `turbomode scan` first")
            return on_disk
        newest = runs.sort_values(["finished_at", "id"]).iloc[-1]
        run = store.run(pd.Timestamp(newest["scan_date"]).date())
    finally:
        if own:
            store.dispose()
    stored = (run.summary or {}).get("document") if run is not None else None
    if run is None or stored is None:  # a run from before documents were stored
        if on_disk is None:
            raise ScanError(f"no scan document at {path}: run `turbomode scan` again")
        return on_disk
    if on_disk is not None and on_disk.get("token") == stored.get("token"):
        return on_disk
    doc = {**stored, "run_id": run.id}
    atomic_write_json(doc, path.parent / f"scan_{run.scan_date}.json")
    atomic_write_json(doc, path)
    event(log, "scan.document_repaired", scan_date=str(run.scan_date), run_id=run.id)
    return doc
