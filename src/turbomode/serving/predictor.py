"""The service's logic without the web framework: predictions, signals, health, reloads.

Scoring is the scan's: :func:`turbomode.signals.scan.score_universe` (one ``predict_proba``
per (sector, horizon), the scan's failure reasons), :func:`turbomode.signals.scan.
fresh_signals` (the entry rule, stop, target, entry range) at the latest scan's entry
thresholds. A prediction is therefore exactly what tonight's scan computed for that symbol,
given the same features, model and thresholds.

**Memo.** Between two materializations the online vector of a symbol does not change, and
neither does the answer. Each answer — a prediction, or the reason there is none — is
remembered under (symbol, horizon, digest of the vector's bytes and event time); a failure to
load a model is not. An entry is only used while no model was swapped and neither
the prices nor the scan thresholds were reloaded (a generation counter, checked on every
lookup — a result computed across a swap is never stored). The online read still happens on
every request, so a re-materialized vector is scored afresh. ``TURBOMODE_SERVE_MEMO_SIZE=0``
turns it off.

Errors are :class:`ServingError` with an HTTP status: 400 for a malformed request, 404 for a
symbol or model the service does not have, 503 when a store does not answer.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from turbomode.config import GICS_SECTORS, Settings
from turbomode.errors import TurboModeError
from turbomode.feature_store import FeatureLayout
from turbomode.logs import event
from turbomode.models.ensemble import BASE_MODELS
from turbomode.models.loading import class_prior
from turbomode.serving import service_metrics as metrics
from turbomode.serving.context import (
    EMPTY_SCAN,
    ContextError,
    MarketSnapshot,
    ScanSnapshot,
    file_token,
    load_market,
    load_scan,
    market_paths,
    scan_path,
)
from turbomode.serving.live_models import LiveModels, Loaded, Swap
from turbomode.serving.online import feature_age_seconds, online_vectors_at
from turbomode.serving.schemas import (
    BatchPredictions,
    Check,
    Explanation,
    FeaturePredictions,
    FeatureRowPrediction,
    Health,
    ModelsPage,
    ModelStatus,
    Prediction,
    ReloadResult,
    SectorOut,
    SectorsPage,
    SignalOut,
    SignalsPage,
    SwapOut,
    SymbolError,
    Thresholds,
)
from turbomode.serving.settings import ServingSettings
from turbomode.signals import rules
from turbomode.signals.explain import explain_rows
from turbomode.signals.scan import (
    BUY_I,
    HISTORY_UNAVAILABLE,
    HOLD_I,
    SELL_I,
    ModelCache,
    fresh_signals,
    model_key,
    offline_history,
    score_rows,
)

log = logging.getLogger("turbomode.serving")


class ServingError(TurboModeError):
    """A request the service answers with an error status and a message that says why."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.detail:
            out["detail"] = self.detail
        return out


class Memo:
    """A bounded LRU of answers (a prediction, or why there is none), emptied when its
    generation moves (see the module notes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Prediction | SymbolError] = OrderedDict()
        self._generation: Hashable = None
        self._lock = threading.Lock()

    def get(self, key: Hashable, generation: Hashable) -> Prediction | SymbolError | None:
        if self.size == 0:
            return None
        with self._lock:
            if generation != self._generation:
                self._items.clear()
                self._generation = generation
                return None
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Prediction | SymbolError, generation: Hashable) -> None:
        if self.size == 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # computed across a swap or reload: never remembered
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass(frozen=True)
class _Vectors:
    """Online vectors of some symbols; the frame score_universe takes is built on demand."""

    symbols: list[str]
    matrix: np.ndarray
    names: list[str]
    stamps: dict[str, datetime | None]
    digests: dict[str, bytes]

    def frame(self, symbols: set[str]) -> pd.DataFrame:
        rows = [i for i, s in enumerate(self.symbols) if s in symbols]
        out = pd.DataFrame(self.matrix[rows], columns=self.names)
        out.insert(0, "symbol", [self.symbols[i] for i in rows])
        return out


def _digest(row: np.ndarray, stamp: datetime | None) -> bytes:
    h = hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16)
    h.update(str(stamp).encode())
    return h.digest()


def normalize_symbol(symbol: str) -> str:
    return symbol.strip().upper()


class Predictor:
    """Everything the service answers, thread-safe; the BentoML service only adapts it to HTTP."""

    def __init__(
        self,
        settings: Settings,
        serving: ServingSettings | None = None,
        *,
        registry: Any = None,
        store: Any = None,
    ) -> None:
        from turbomode.models.registry import ModelRegistry

        self.settings = settings
        self.serving = serving or ServingSettings()
        self.feature_names = FeatureLayout.from_registry().all
        self._column = {name: i for i, name in enumerate(self.feature_names)}
        self._limits_of: tuple[ScanSnapshot, dict[str, float], Thresholds] | None = None
        self.horizons = sorted(int(h) for h in settings.labels.horizons)
        self.registry = registry or ModelRegistry(
            settings.stores.model_registry_uri, family="turbomode"
        )
        self.models = LiveModels(
            self.registry,
            maxsize=self.serving.model_cache_size,
            threads=self.serving.model_threads,
            inference=settings.compute.inference,
            on_load=self._loaded,
            on_swap=self._swapped,
        )
        self.scan_file = scan_path(settings, self.serving.scan_file)
        self._store = store
        self._store_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._market: MarketSnapshot | None = None
        self._market_error = "not loaded yet"
        self._scan: ScanSnapshot = EMPTY_SCAN
        self._scan_error = ""
        self._context_generation = 0
        self._memo = Memo(self.serving.memo_size)
        self._health: tuple[float, Health] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._manage_heap = False
        self.reload_files()

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start serving: the watcher (production pointers and data files every
        watch_interval_s) and the heap management described in :meth:`_settle_heap`."""
        if self._watcher is not None:
            return
        self._manage_heap = True
        self._settle_heap(collect=True)
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="turbomode-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None
        if self._manage_heap:
            gc.unfreeze()  # hand everything back to the collector before the process ends
            self._manage_heap = False

    def _settle_heap(self, collect: bool) -> None:
        """Move what is alive now out of the cyclic collector's way (:func:`gc.freeze`).

        A served process holds a few hundred thousand long-lived objects (libraries, data,
        33 ensembles); every full collection walks all of them — 150–400 ms measured here,
        a stall of every request in flight, several times a minute under load. Frozen, they
        are skipped. After a lazy model load only the freeze runs (microseconds); after a swap
        or a reload, which leave old objects behind, everything is unfrozen and collected
        once (about 0.3 s, in the watcher) before freezing again.
        """
        if not self._manage_heap:
            return
        if collect:
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    def _watch(self) -> None:
        while not self._stop.wait(self.serving.watch_interval_s):
            try:
                result = self.reload()
                changed = result.swaps or result.market_reloaded or result.scan_reloaded
                self._settle_heap(collect=bool(changed))
            except Exception as exc:  # the watcher must outlive any one bad tick
                event(log, "serving.watch_failed", logging.ERROR, error=str(exc))

    def reload(self, force: bool = False) -> ReloadResult:
        """Follow production pointers, then re-read changed files (all of them with force)."""
        with self._reload_lock:
            swaps = self.models.refresh()
            market, scan = self.reload_files(force=force)
            if force:
                self._context_generation += 1
            self._health = None
        return ReloadResult(
            swaps=[SwapOut(key=s.key, old=s.old, new=s.new) for s in swaps],
            market_reloaded=market,
            scan_reloaded=scan,
        )

    def reload_files(self, force: bool = False) -> tuple[bool, bool]:
        """Re-read the clean store and the scan document when their files changed."""
        market_changed = scan_changed = False
        current = self._market
        if force or current is None or current.token != file_token(*market_paths(self.settings)):
            try:
                self._market = load_market(self.settings)
                self._market_error = ""
                market_changed = True
                event(log, "serving.market_loaded", price_date=str(self._market.price_date))
            except (ContextError, OSError, ValueError) as exc:
                self._market_error = str(exc)
                event(log, "serving.market_failed", logging.WARNING, error=str(exc))
        if force or self._scan.token != file_token(self.scan_file):
            try:
                self._scan = load_scan(self.scan_file)
                self._scan_error = ""
                scan_changed = True
                if self._scan.scan_date:
                    day = pd.Timestamp(self._scan.scan_date, tz="UTC")
                    metrics.SCAN_TIMESTAMP.set(day.timestamp())
            except ContextError as exc:
                self._scan_error = str(exc)
                event(log, "serving.scan_failed", logging.WARNING, error=str(exc))
        if market_changed or scan_changed:
            self._context_generation += 1
        return market_changed, scan_changed

    def _loaded(self, key: str, loaded: Loaded) -> None:
        self._settle_heap(collect=False)  # the new ensemble's objects are long-lived
        metrics.MODEL_LOAD_SECONDS.observe(loaded.load_seconds)
        metrics.MODEL_INFO.labels(key=key, version=loaded.version).set(1)
        metrics.MODELS_LOADED.set(len(self.models))

    def _swapped(self, swap: Swap) -> None:
        if swap.old is not None:
            metrics.MODEL_INFO.labels(key=swap.key, version=swap.old).set(0)
        metrics.MODEL_SWAPS.labels(key=swap.key).inc()
        metrics.MODELS_LOADED.set(len(self.models))

    # ---- shared reads ------------------------------------------------------------------
    def market(self) -> MarketSnapshot:
        if self._market is None:
            raise ServingError(503, f"market data unavailable: {self._market_error}")
        return self._market

    def store(self) -> Any:
        """Feast, opened on first use so the service can start before the store answers."""
        with self._store_lock:
            if self._store is None:
                from turbomode import feature_store as fs

                try:
                    self._store = fs.open_store(self.settings)
                except Exception as exc:
                    raise ServingError(503, f"online store unavailable: {exc}") from exc
            return self._store

    def read_vectors(self, symbols: Sequence[str]) -> _Vectors:
        store = self.store()
        try:
            with self._store_lock:
                matrix, stamps = online_vectors_at(store, symbols, len(self.feature_names))
        except Exception as exc:
            raise ServingError(503, f"online store unavailable: {exc}") from exc
        by_symbol = dict(zip(symbols, stamps, strict=True))
        digests = {s: _digest(matrix[i], by_symbol[s]) for i, s in enumerate(symbols)}
        newest = max((t for t in stamps if t is not None), default=None)
        if newest is not None:
            metrics.FEATURE_TIMESTAMP.set(newest.timestamp())
            metrics.FEATURE_AGE.set(feature_age_seconds(newest))
        return _Vectors(list(symbols), matrix, self.feature_names, by_symbol, digests)

    def current_thresholds(self) -> dict[str, float]:
        """The entry thresholds, with the latest scan's as the measured ones: quantile mode
        measures them over the whole universe, which one request cannot."""
        return rules.entry_thresholds(self.settings.signals, measured=self._scan.thresholds)

    def _limits(self) -> tuple[dict[str, float], Thresholds]:
        """:meth:`current_thresholds` and their API form, computed once per loaded scan."""
        scan, cached = self._scan, self._limits_of
        if cached is None or cached[0] is not scan:
            limits = self.current_thresholds()
            cached = (scan, limits, self.thresholds_out(limits))
            self._limits_of = cached
        return cached[1], cached[2]

    def thresholds_out(self, limits: Mapping[str, float]) -> Thresholds:
        """Thresholds as the API shows them, saying what they compare."""
        return Thresholds(
            buy=limits["buy"], sell=limits["sell"], on=rules.threshold_basis(self.settings.signals)
        )

    def _production(self, key: str) -> tuple[Any, str]:
        """The production model of ``key`` and its version: 503 when it fails to load, 404
        when the key has none."""
        try:
            found = self.models.get(key)
        except Exception as exc:
            raise ServingError(503, f"model {key} failed to load: {exc}") from exc
        if found is None:
            raise ServingError(404, f"no production model for {key}")
        return found

    def _generation(self) -> tuple[int, int]:
        return (self.models.generation, self._context_generation)

    # ---- predictions -------------------------------------------------------------------
    def _check_horizons(self, horizons: Sequence[int]) -> list[int]:
        bad = sorted({int(h) for h in horizons} - set(self.horizons))
        if bad:
            raise ServingError(400, f"horizon(s) {bad} not served; served: {self.horizons}")
        return sorted({int(h) for h in horizons})

    def predict(self, symbol: str, horizon: int, endpoint: str = "predict") -> Prediction:
        """One symbol × horizon; every failure is a 4xx naming the reason."""
        sym = normalize_symbol(symbol)
        h = self._check_horizons([horizon])[0]
        results, errors = self._predict_many([sym], [h], endpoint)
        if (sym, h) in results:
            return results[(sym, h)]
        reason = errors[0].error
        raise ServingError(503 if HISTORY_UNAVAILABLE in reason else 404, reason)

    def predict_batch(
        self,
        symbols: Sequence[str],
        horizons: Sequence[int] | None,
        endpoint: str = "predict_batch",
    ) -> BatchPredictions:
        """Many symbols at once: one online read, one predict_proba per (sector, horizon)."""
        wanted = list(dict.fromkeys(normalize_symbol(s) for s in symbols))
        if not wanted:
            raise ServingError(400, "symbols is empty: send at least one symbol")
        if len(wanted) > self.serving.max_batch_symbols:
            raise ServingError(
                400,
                f"{len(wanted)} symbols in one batch; at most {self.serving.max_batch_symbols}",
                "split the request, or raise TURBOMODE_SERVE_MAX_BATCH_SYMBOLS",
            )
        hs = self._check_horizons(horizons if horizons else self.horizons)
        results, errors = self._predict_many(wanted, hs, endpoint)
        ordered = [results[(s, h)] for s in wanted for h in hs if (s, h) in results]
        return BatchPredictions(predictions=ordered, errors=errors)

    def _predict_many(
        self, symbols: list[str], horizons: list[int], endpoint: str
    ) -> tuple[dict[tuple[str, int], Prediction], list[SymbolError]]:
        market = self.market()
        generation = self._generation()
        errors: list[SymbolError] = []
        known = []
        for s in symbols:
            if market.knows(s):
                known.append(s)
            else:
                errors.append(SymbolError(symbol=s, error=self._unknown(s, market)))
        results: dict[tuple[str, int], Prediction] = {}
        if known:
            vectors = self.read_vectors(known)
            todo: list[tuple[str, int]] = []
            hits = 0
            for s in known:
                for h in horizons:
                    hit = self._memo.get((s, h, vectors.digests[s]), generation)
                    if hit is None:
                        todo.append((s, h))
                        continue
                    hits += 1
                    if isinstance(hit, Prediction):
                        results[(s, h)] = hit
                    elif hit not in errors:  # a symbol's failure is listed once
                        errors.append(hit)
            metrics.MEMO.labels(result="hit").inc(hits)
            metrics.MEMO.labels(result="miss").inc(len(todo))
            if todo:
                scored, failed = self._score(todo, vectors, market)
                for key, pred in scored.items():
                    results[key] = pred
                    self._memo.put((*key, vectors.digests[key[0]]), pred, generation)
                for err in failed:
                    errors.append(err)
                    if "failed to load" in err.error or HISTORY_UNAVAILABLE in err.error:
                        continue  # may pass on the next try: not remembered
                    for h in horizons if err.horizon is None else [err.horizon]:
                        if (err.symbol, h) in todo:
                            self._memo.put(
                                (err.symbol, h, vectors.digests[err.symbol]), err, generation
                            )
        for pred in results.values():
            metrics.PREDICTIONS.labels(
                endpoint=endpoint, sector=pred.sector, horizon=str(pred.horizon), signal=pred.signal
            ).inc()
        for err in errors:
            metrics.FAILURES.labels(endpoint=endpoint, reason=metrics.reason_code(err.error)).inc()
        return results, errors

    @staticmethod
    def _unknown(symbol: str, market: MarketSnapshot) -> str:
        return f"unknown symbol {symbol!r}: not in the universe ({len(market.sector_of)} symbols)"

    def _score(
        self, todo: list[tuple[str, int]], vectors: _Vectors, market: MarketSnapshot
    ) -> tuple[dict[tuple[str, int], Prediction], list[SymbolError]]:
        """The scan's scoring, entry rule and levels for the (symbol, horizon) pairs in todo:
        the scan's own functions on arrays (:func:`score_rows`, :func:`fresh_signals`), with
        the members' arrays and closes precomputed per loaded market."""
        wanted = {s for s, _ in todo}
        horizons = sorted({h for _, h in todo})
        members = market.rows
        rows = np.array(sorted(members.row_of[s] for s in wanted), dtype=np.intp)
        symbols = members.symbols[rows]
        at = {s: i for i, s in enumerate(vectors.symbols)}
        X = vectors.matrix[[at[s] for s in symbols.tolist()]]
        # LiveModels has ModelCache's get() contract; score_rows is typed to the class.
        models = cast("ModelCache", self.models)
        scores, failures, missing, _versions = score_rows(
            symbols,
            members.sectors[rows],
            members.caps[rows],
            X,
            self._column,
            members.close[rows],
            models,
            horizons,
            # sequence learners: the symbols' last days dated ≤ the price date, read as the
            # scan reads them from the offline store on the service's volume (only then)
            history=offline_history(self.settings, market.price_date),
            scan_date=market.price_date,
        )
        limits, levels = self._limits()
        out: dict[tuple[str, int], Prediction] = {}
        if scores is not None:
            fresh = {
                s.key: s for s in fresh_signals(scores, market.price_date, self.settings, limits)
            }
            columns = ("symbol", "sector", "cap_class", "horizon", "p_sell", "p_hold", "p_buy")
            lists = [scores[c].tolist() for c in (*columns, "close", "atr", "model_version")]
            for sym, sector, cap, h, p_sell, p_hold, p_buy, close, atr, version in zip(
                *lists, strict=True
            ):
                sym, sector, h = str(sym), str(sector), int(h)
                sig = fresh.get((sym, h))
                out[(sym, h)] = Prediction(
                    symbol=sym,
                    sector=sector,
                    cap_class=str(cap),
                    horizon=h,
                    p_sell=float(p_sell),
                    p_hold=float(p_hold),
                    p_buy=float(p_buy),
                    signal="HOLD" if sig is None else sig.side,
                    confidence=float(p_hold) if sig is None else sig.confidence,
                    close=float(close),
                    atr=float(atr),
                    entry_low=None if sig is None else sig.entry_low,
                    entry_high=None if sig is None else sig.entry_high,
                    stop=None if sig is None else sig.stop,
                    target=None if sig is None else sig.target,
                    stop_distance=None if sig is None else sig.stop_distance,
                    model_key=model_key(sector, h),
                    model_version=str(version),
                    price_date=market.price_date,
                    features_as_of=vectors.stamps.get(sym),
                    thresholds=levels,
                )
        errors: list[SymbolError] = []
        reported: set[str] = set()
        for sym, h in todo:
            if (sym, h) in out:
                continue
            reason = failures.get(sym)
            if reason is not None and not reason.startswith("no production model"):
                if sym not in reported:  # about the symbol, whatever the horizon
                    errors.append(SymbolError(symbol=sym, error=reason))
                    reported.add(sym)
                continue
            key = model_key(market.sector_of[sym], h)  # named per horizon asked for
            why = next((m for m in missing if m.startswith(key)), key)
            errors.append(
                SymbolError(symbol=sym, horizon=h, error=f"no production model for {why}")
            )
        return out, errors

    def predict_features(
        self, sector: str, horizon: int, rows: Sequence[Sequence[float | None]]
    ) -> FeaturePredictions:
        """Raw feature vectors (the model's feature order) → probabilities and the entry rule."""
        if sector not in GICS_SECTORS:
            raise ServingError(400, f"unknown sector {sector!r}; one of: {', '.join(GICS_SECTORS)}")
        h = self._check_horizons([horizon])[0]
        if not rows:
            raise ServingError(400, "features is empty: send at least one feature vector")
        if len(rows) > self.serving.max_feature_rows:
            raise ServingError(
                400, f"{len(rows)} feature rows; at most {self.serving.max_feature_rows} per call"
            )
        key = model_key(sector, h)
        model, version = self._production(key)
        if model.window_days:
            raise ServingError(
                400,
                f"the {key} model reads each stock's last {model.window_days} days (sequence "
                "learners): one feature vector cannot give them; use /predict with the symbol",
            )
        n = len(model.features)
        bad = [i for i, row in enumerate(rows) if len(row) != n]
        if bad:
            raise ServingError(
                400,
                f"feature row(s) {bad[:10]} have {len(rows[bad[0]])} values; the {key} model "
                f"takes {n}",
                "values in the model's feature order (the `features` of `turbomode models show "
                "KEY --json`); null for a missing value (as in warm-up)",
            )
        X = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float32)
        proba = model.predict_proba(X)
        prior = class_prior(model)
        limits = self.current_thresholds()
        scores = pd.DataFrame(
            {
                "symbol": [f"row {i}" for i in range(len(X))],
                "sector": sector,
                "cap_class": "",
                "horizon": h,
                "p_buy": proba[:, BUY_I],
                "p_hold": proba[:, HOLD_I],
                "p_sell": proba[:, SELL_I],
                "prior_buy": prior[BUY_I],
                "prior_sell": prior[SELL_I],
                "close": np.nan,  # no price here: the entry rule needs none
                "atr": np.nan,
                "row": np.arange(len(X)),
            }
        )
        if rules.invalid_probability_mask(scores).any():
            raise ServingError(500, f"the {key} model returned invalid probabilities")
        cand = rules.night_candidates(scores, self.settings.signals, limits)
        side = dict(zip(cand["row"].tolist(), cand["side"].tolist(), strict=True))
        conf = dict(zip(cand["row"].tolist(), cand["confidence"].tolist(), strict=True))
        out = []
        for i in range(len(X)):
            call = side.get(i, "HOLD")
            out.append(
                FeatureRowPrediction(
                    p_sell=float(proba[i, SELL_I]),
                    p_hold=float(proba[i, HOLD_I]),
                    p_buy=float(proba[i, BUY_I]),
                    signal=call,
                    confidence=float(conf[i]) if i in conf else float(proba[i, HOLD_I]),
                )
            )
            metrics.PREDICTIONS.labels(
                endpoint="predict_features", sector=sector, horizon=str(h), signal=call
            ).inc()
        return FeaturePredictions(
            sector=sector,
            horizon=h,
            model_key=key,
            model_version=version,
            n_features=n,
            thresholds=self.thresholds_out(limits),
            predictions=out,
        )

    def explain(self, symbol: str, horizon: int) -> Explanation:
        """One symbol × horizon explained by its production model on its latest online
        features, percentiles among the whole universe's: what the scan stores for the
        signals it issues, for any symbol."""
        sym = normalize_symbol(symbol)
        h = self._check_horizons([horizon])[0]
        market = self.market()
        if not market.knows(sym):
            raise ServingError(404, self._unknown(sym, market))
        key = model_key(market.sector_of[sym], h)
        model, version = self._production(key)
        if any(n not in BASE_MODELS for n in getattr(model, "learners_", [])):
            # TreeSHAP shares exist for trees only (turbomode.models.explain refuses these)
            raise ServingError(
                400, f"the {key} model has neural learners: explanations cover tree models only"
            )
        universe = sorted(set(market.members["symbol"].astype(str)))
        vectors = self.read_vectors(universe)
        frame = vectors.frame(set(universe))
        rows = frame[frame["symbol"] == sym]
        if rows[list(model.features)].isna().all(axis=None):
            raise ServingError(404, f"no features in the online store for {sym}")
        payload = explain_rows(model, rows, frame, key, version)[sym]
        return Explanation(symbol=sym, horizon=h, features_as_of=vectors.stamps.get(sym), **payload)

    # ---- signals -----------------------------------------------------------------------
    def signals(
        self,
        cap_class: str | None = None,
        side: str | None = None,
        sector: str | None = None,
        horizon: int | None = None,
        symbol: str | None = None,
        limit: int | None = None,
        order: str = "effective",
    ) -> SignalsPage:
        """The latest scan's active signals, filtered, by effective confidence (``order=
        "confidence"``: by the call's own confidence, whatever its age)."""
        if sector is not None and sector not in GICS_SECTORS:
            raise ServingError(400, f"unknown sector {sector!r}; one of: {', '.join(GICS_SECTORS)}")
        scan = self._scan
        frame = scan.signals
        if len(frame):
            mask = pd.Series(True, index=frame.index)
            for column, value in (
                ("cap_class", cap_class),
                ("side", side),
                ("sector", sector),
                ("horizon", horizon),
                ("symbol", symbol),
            ):
                if value is not None:
                    mask &= frame[column] == value
            frame = frame[mask]
            if order == "confidence":
                frame = frame.sort_values(
                    ["confidence", "symbol", "horizon"],
                    ascending=[False, True, True],
                    kind="stable",
                )
        total = len(frame)
        if limit is not None:
            frame = frame.head(limit)
        doc = scan.document
        limits = scan.thresholds
        return SignalsPage(
            scan_date=doc.get("scan_date"),
            run_id=doc.get("run_id"),
            thresholds=None if limits is None else self.thresholds_out(limits),
            total=total,
            signals=[SignalOut.model_validate(r) for r in frame.to_dict("records")],
        )

    def signals_for(self, symbol: str) -> SignalsPage:
        """One symbol's active signals (every horizon); 404 for a symbol outside the universe."""
        sym = normalize_symbol(symbol)
        market = self.market()
        if not market.knows(sym):
            raise ServingError(404, self._unknown(sym, market))
        return self.signals(symbol=sym)

    def sectors(self, stance: str | None = None) -> SectorsPage:
        """The latest scan's sector overview (bullish / bearish / neutral)."""
        frame = self._scan.sectors
        if len(frame) and stance is not None:
            frame = frame[frame["stance"] == stance]
        rows = [
            SectorOut.model_validate({k: _nan_to_none(v) for k, v in r.items()})
            for r in frame.to_dict("records")
        ]
        return SectorsPage(scan_date=self._scan.document.get("scan_date"), sectors=rows)

    # ---- operations --------------------------------------------------------------------
    def model_status(self) -> ModelsPage:
        """Production and served versions of every key of the universe's sectors."""
        served = {k: e.version for k, e in self.models.loaded().items()}
        sectors = self._market.sectors if self._market else list(GICS_SECTORS)
        out = []
        for sector in sectors:
            for h in self.horizons:
                key = model_key(sector, h)
                try:
                    production = self.registry.production(key)
                except Exception as exc:
                    raise ServingError(503, f"model registry unavailable: {exc}") from exc
                out.append(
                    ModelStatus(
                        key=key, production_version=production, served_version=served.get(key)
                    )
                )
        return ModelsPage(models=out)

    def health(self) -> Health:
        """Ready when a production model loads and predicts and the online store answers.

        The answer is reused for ``health_cache_s`` so frequent probes stay cheap.
        """
        cached = self._health
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.serving.health_cache_s:
            return cached[1]
        checks = {
            "market": Check(ok=self._market is not None, detail=self._market_error or "loaded"),
            "models": self._check_models(),
            "online_store": self._check_store(),
            "scan": Check(
                ok=not self._scan_error,
                detail=self._scan_error
                or (f"scan of {self._scan.scan_date}" if self._scan.scan_date else "no scan yet"),
            ),
        }
        ready = all(checks[c].ok for c in ("market", "models", "online_store"))
        metrics.READY.set(1 if ready else 0)
        doc = self._scan.document
        result = Health(
            status="ready" if ready else "not ready",
            checks=checks,
            models_loaded=len(self.models),
            price_date=self._market.price_date if self._market else None,
            scan_date=doc.get("scan_date"),
        )
        self._health = (now, result)
        return result

    def _probe_symbol(self) -> str | None:
        market = self._market
        if market is None or market.bars.empty:
            return None
        return str(market.bars["symbol"].iloc[0])

    def _check_models(self) -> Check:
        loaded = self.models.loaded()
        if loaded:
            return Check(ok=True, detail=f"{len(loaded)} ensemble(s) loaded")
        sectors = self._market.sectors if self._market else list(GICS_SECTORS)
        try:
            for sector in sectors:
                for h in self.horizons:
                    found = self.models.get(model_key(sector, h))
                    if found is not None:
                        model, version = found
                        probe: pd.DataFrame | np.ndarray = np.full(
                            (1, len(model.features)), np.nan, dtype=np.float32
                        )
                        if model.window_days:  # a window of one day, all missing
                            probe = pd.DataFrame(
                                np.full((1, len(self.feature_names)), np.nan, np.float32),
                                columns=self.feature_names,
                            ).assign(symbol="probe", date=pd.Timestamp("2000-01-03"))
                        model.predict_proba(probe)
                        return Check(ok=True, detail=f"{model_key(sector, h)} {version} predicts")
        except Exception as exc:
            return Check(ok=False, detail=f"model registry or model failed: {exc}")
        return Check(ok=False, detail="no production model in the registry: run `turbomode train`")

    def _check_store(self) -> Check:
        probe = self._probe_symbol()
        if probe is None:
            return Check(ok=False, detail="no symbol to probe (market data unavailable)")
        try:
            vectors = self.read_vectors([probe])
        except ServingError as exc:
            return Check(ok=False, detail=exc.message)
        stamp = vectors.stamps.get(probe)
        if stamp is None:
            return Check(
                ok=False,
                detail=f"the online store has no vector for {probe}: run `turbomode features "
                "materialize`",
            )
        return Check(ok=True, detail=f"{probe} features of {stamp.date()}")

    def authorize(self, header: str | None) -> None:
        """Bearer-token check of the admin endpoints (constant-time comparison)."""
        token = self.serving.admin_token
        if token is None:
            raise ServingError(403, "admin endpoints are disabled: set TURBOMODE_SERVE_ADMIN_TOKEN")
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()
        ):
            raise ServingError(401, "a valid bearer token is required (Authorization: Bearer …)")


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and np.isnan(value) else value
