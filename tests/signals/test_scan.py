"""The nightly scan end to end on a small synthetic market with tiny real ensembles: failures
are counted and named, re-runs replace a date's run, last night's signals open positions at
tonight's open, outputs are readable, and the model cache follows promotions.

One module fixture ingests 24 synthetic symbols (all 11 sectors), builds features, trains two
tiny stacked ensembles (one on 1-day labels, one on 5-day labels) and registers them as the
production models of four sectors on every horizon and of Energy on 1 day only, so "no model
at all" (six sectors) and "some horizons missing" (Energy) both occur. Few keys keep every
scan under a few seconds: prediction cost is per model, not per row.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY
from turbomode.config import GICS_SECTORS, Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.feature_store import FeatureLayout
from turbomode.features.engine import build_features
from turbomode.labels import make_labels
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.registry import ModelRegistry
from turbomode.records.positions import Position
from turbomode.records.signals import Signal
from turbomode.signals.scan import (
    ModelCache,
    ScanResult,
    manage_book,
    run_scan,
    score_universe,
)
from turbomode.store import SignalStore

MODELLED = ("Financials", "Health Care", "Industrials", "Information Technology")
ONLY_1D = "Energy"
NO_MODEL = tuple(sorted(set(GICS_SECTORS) - {*MODELLED, ONLY_1D}))
HORIZONS = (1, 2, 5)
JSON_KEYS = {
    "scan_date",
    "run_id",
    "n_symbols",
    "n_scored",
    "n_failed",
    "stale_features",
    "feature_source",
    "previous_scan_date",
    "token",
    "thresholds",
    "missing_models",
    "signals",
    "sectors",
    "positions",
    "pending_exits",
    "failures",
    "labels",
}


@dataclass
class Market:
    """What every test scans: settings, prices, features and registered production models."""

    settings: Settings
    prices: pd.DataFrame
    members: pd.DataFrame
    features: pd.DataFrame
    registry: ModelRegistry
    models: ModelCache
    artifacts: dict[int, Path]

    @property
    def dates(self) -> list[date]:
        return [d.date() for d in sorted(self.prices["date"].unique())]

    def vectors(self, day: date) -> pd.DataFrame:
        """What ``online_vectors`` returns on ``day``: each symbol's newest vector (float32)."""
        cols = FeatureLayout.from_registry().all
        upto = self.features[self.features["date"] <= pd.Timestamp(day)]
        newest = upto.groupby("symbol", sort=True).tail(1)
        frame = newest[["symbol", *cols]].astype(dict.fromkeys(cols, "float32"))
        return frame.reset_index(drop=True)

    def bars(self, day: date) -> pd.DataFrame:
        return self.prices[self.prices["date"] == pd.Timestamp(day)].set_index("symbol")

    def sector_of(self, symbol: str) -> str:
        return str(self.members.set_index("symbol").loc[symbol, "sector"])


def _register(registry: ModelRegistry, key: str, directory: Path) -> str:
    files = {p.name: p for p in directory.iterdir() if p.is_file()}
    version = registry.register(key, files, {"source": "test_scan"})
    registry.promote(key, version)
    return version


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    tmp = tmp_path_factory.mktemp("scan")
    settings = Settings(
        data={"data_dir": tmp},
        synthetic={"n_symbols": 24, "n_days": 320},
        signals={"threshold_mode": "quantile", "threshold_quantile": 0.8, "threshold_floor": 0.05},
    )
    ingest(settings)
    md = load_clean(settings)
    sectors = md.universe.sector_map()
    feats = build_features(md.prices, md.market, sectors).frame
    labels = make_labels(md.prices, settings.labels, sectors=sectors)
    cols = FeatureLayout.from_registry().all
    data = feats.merge(labels, on=["symbol", "date"])
    data = data[data["date"] >= data["date"].max() - pd.Timedelta(days=150)]
    artifacts: dict[int, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN warm-up columns
        for h in (1, 5):
            rows = data[data[f"label_{h}"].notna()]
            ens = StackedEnsemble(cols, h, TINY).fit(
                rows[cols], rows[f"label_{h}"].to_numpy(dtype=np.int64), rows["date"].to_numpy()
            )
            artifacts[h] = tmp / "artifacts" / f"{h}d"
            ens.save(artifacts[h])
    registry = ModelRegistry(tmp / "models", family="turbomode")
    for sector in MODELLED:
        for h in HORIZONS:
            _register(registry, f"{sector}/{h}d", artifacts[5 if h == 5 else 1])
    _register(registry, f"{ONLY_1D}/1d", artifacts[1])
    return Market(
        settings=settings,
        prices=md.prices,
        members=md.universe.members[["symbol", "sector", "cap_class"]],
        features=feats,
        registry=registry,
        models=ModelCache(registry),
        artifacts=artifacts,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SignalStore]:
    s = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    yield s
    s.dispose()


@pytest.fixture
def scan(market: Market, store: SignalStore) -> Callable[..., ScanResult]:
    """Scan ``day`` into the test's store with the warm cache; ``vectors`` default to the day's."""

    def run(day: date, vectors: pd.DataFrame | None = None, **kw: Any) -> ScanResult:
        return run_scan(
            kw.pop("settings", market.settings),
            store=store,
            models=market.models,
            scan_date=day,
            vectors=market.vectors(day) if vectors is None else vectors,
            **kw,
        )

    return run


def _keys(signals: list[Signal]) -> list[tuple[str, int, str, date, float]]:
    return sorted((s.symbol, s.horizon, s.side, s.signal_date, s.confidence) for s in signals)


# --------------------------------------------------------------------------- (a) failures


def test_scan_counts_failures_names_reasons_and_skips_sectors_without_models(
    market: Market, store: SignalStore, scan: Callable[..., ScanResult]
) -> None:
    day = market.dates[-1]
    members = set(market.members["symbol"])
    it = sorted(market.members.loc[market.members["sector"] == "Information Technology", "symbol"])
    broken = it[0]
    vectors = market.vectors(day)
    vectors.loc[vectors["symbol"] == broken, vectors.columns[1:]] = np.nan
    no_bar = members - set(market.bars(day).index)
    unmodelled = {
        s for s in members if market.sector_of(s) in NO_MODEL and s not in no_bar | {broken}
    }
    assert no_bar and unmodelled and broken not in no_bar  # the fixture exercises each case

    result = scan(day, vectors)

    assert result.failures[broken] == "no features in the online store"
    assert all(result.failures[s] == "no price bar on the scan date" for s in no_bar)
    for s in unmodelled:
        assert result.failures[s] == f"no production model for {market.sector_of(s)} (any horizon)"
    assert set(result.failures) == {broken} | no_bar | unmodelled
    assert result.n_symbols == len(members) == 24
    assert result.n_scored == len(members) - len(result.failures) > 0
    assert set(result.scores["symbol"]) == members - set(result.failures)

    run = store.run(day)
    assert run is not None
    assert (run.n_symbols, run.n_scored, run.n_failed) == (
        24,
        result.n_scored,
        len(result.failures),
    )
    assert store.failures(day) == result.failures

    want_missing = {f"{s}/{h}d" for s in NO_MODEL for h in HORIZONS}
    want_missing |= {f"{ONLY_1D}/2d", f"{ONLY_1D}/5d"}
    assert set(result.missing_models) == want_missing
    assert run.summary["missing_models"] == result.missing_models
    assert run.summary["sectors_without_models"] == sorted(NO_MODEL)
    energy = result.scores[result.scores["sector"] == ONLY_1D]
    assert len(energy) and set(energy["horizon"]) == {1}

    assert result.active, "quantile thresholds must give signals"
    assert not {s.sector for s in result.active} & set(NO_MODEL)
    assert all(s.horizon == 1 for s in result.active if s.sector == ONLY_1D)
    assert broken not in {s.symbol for s in result.active}
    assert set(result.sectors["sector"]).isdisjoint(NO_MODEL)


# --------------------------------------------------------------------------- (b) re-runs


def test_killed_scan_then_reruns_leave_exactly_one_run(
    market: Market,
    store: SignalStore,
    scan: Callable[..., ScanResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d1, d2 = market.dates[-2], market.dates[-1]
    scan(d1)
    book_before, events_before = store.positions(), store.position_events()
    assert events_before == []  # the first night opens nothing: its signals act on d2

    original = SignalStore._write_events
    attempts = {"n": 0}

    def killed_on_first_attempt(self: SignalStore, *args: Any, **kw: Any) -> None:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("killed midway through the scan transaction")
        original(self, *args, **kw)

    monkeypatch.setattr(SignalStore, "_write_events", killed_on_first_attempt)
    with pytest.raises(RuntimeError, match="killed midway"):
        scan(d2)
    assert store.run(d2) is None
    assert store.positions() == book_before and store.position_events() == events_before

    second = scan(d2)
    state = (store.active_signals(), store.positions(), store.position_events())
    third = scan(d2)

    runs = store.runs()
    assert len(runs) == 2
    assert (pd.to_datetime(runs["scan_date"]).dt.date == d2).sum() == 1
    assert int(runs.iloc[-1]["id"]) == third.run_id
    history = store.signal_history()
    assert not history.duplicated(["scan_date", "symbol", "horizon"]).any()
    on_d2 = history[pd.to_datetime(history["scan_date"]).dt.date == d2]
    assert len(on_d2) == len(third.active) > 0
    assert _keys(second.active) == _keys(third.active) == _keys(store.active_signals())
    assert (store.active_signals(), store.positions(), store.position_events()) == state
    assert any(e.kind == "open" for e in state[2])  # the re-runs replayed a real book
    assert store.failures(d2) == third.failures


# --------------------------------------------------------------------------- (c) the book


def test_last_nights_signals_open_positions_at_the_next_open(
    market: Market, store: SignalStore, scan: Callable[..., ScanResult]
) -> None:
    d1, d2 = market.dates[-2], market.dates[-1]
    night1 = scan(d1)
    night2 = scan(d2)
    bars = market.bars(d2)
    rr = market.settings.risk.reward_risk

    best: dict[str, Signal] = {}
    for s in night1.active:
        if s.signal_date == d1 and (
            s.symbol not in best or s.confidence > best[s.symbol].confidence
        ):
            best[s.symbol] = s
    opens = {e.symbol: e for e in night2.events if e.kind == "open"}
    assert len(opens) == len([e for e in night2.events if e.kind == "open"])  # one per symbol
    inside = {
        sym
        for sym, s in best.items()
        if sym in bars.index and s.entry_low <= bars.loc[sym, "open"] <= s.entry_high
    }
    assert inside, "no night-1 signal had its entry range around the night-2 open"
    assert set(opens) == inside

    stored = store.positions()
    for sym in inside:
        s, ev, o = best[sym], opens[sym], float(bars.loc[sym, "open"])
        sign = 1.0 if s.side == "BUY" else -1.0
        detail = json.loads(ev.detail)
        assert (ev.date, ev.price, ev.size_after) == (d2, o, 1.0)
        assert ev.stop_after == pytest.approx(o - sign * s.stop_distance)
        assert detail["target"] == pytest.approx(o + sign * rr * s.stop_distance)
        assert (detail["horizon"], detail["side"], detail["signal_date"]) == (
            s.horizon,
            s.side,
            d1.isoformat(),
        )
        pos = stored[sym]
        assert (pos.entry_date, pos.entry_price, pos.horizon) == (d2, o, s.horizon)
        assert pos.target == pytest.approx(o + sign * rr * s.stop_distance)
        assert pos.state in ("flat", "long" if sign > 0 else "short")
        if pos.state != "flat" and not pos.partials_taken:  # only a partial moves the stop
            assert pos.stop == pytest.approx(o - sign * s.stop_distance)
        assert (pos.state, pos.size, pos.version) == (
            night2.positions[sym].state,
            night2.positions[sym].size,
            night2.positions[sym].version + 1,
        )
        history = store.position_events(sym)
        assert history[0].kind == "open" and history[0].date == d2
    assert set(stored) == inside  # night 1 had no book: every stored position is a new one

    events = store.position_events()
    assert len(events) == len(night2.events)
    again = scan(d2)
    assert store.position_events() == events  # replaced, not duplicated
    assert store.positions() == stored
    assert [e for e in again.events if e.kind == "open"] == list(opens.values())
    assert len(store.runs()) == 2


# --------------------------------------------------------------------------- (d) outputs


def test_latest_scan_json_and_signals_csv(
    market: Market, store: SignalStore, scan: Callable[..., ScanResult]
) -> None:
    day = market.dates[-1]
    result = scan(day)
    latest = Path(result.files["json"])
    doc = json.loads(latest.read_text())
    assert set(doc) == JSON_KEYS
    assert (doc["scan_date"], doc["run_id"], doc["n_symbols"]) == (str(day), result.run_id, 24)
    assert (doc["n_scored"], doc["n_failed"]) == (result.n_scored, len(result.failures))
    assert doc["thresholds"] == result.thresholds and doc["failures"] == result.failures
    assert doc["labels"] == {"0": "SELL", "1": "HOLD", "2": "BUY"}
    assert len(doc["signals"]) == len(result.active) > 0
    assert {"stop", "target", "age_bucket", "effective_confidence"} <= set(doc["signals"][0])
    dated = latest.with_name(f"scan_{day}.json")
    assert json.loads(dated.read_text()) == doc

    csv = pd.read_csv(result.files["csv"])
    assert len(csv) == len(result.active)
    assert sorted(zip(csv["symbol"], csv["horizon"], strict=True)) == sorted(
        s.key for s in result.active
    )
    assert (csv["signal_date"] == str(day)).all()

    # A night without signals still writes a readable CSV: the header, no rows.
    quiet = market.settings.model_copy(deep=True)
    quiet.signals.threshold_mode = "fixed"
    quiet.signals.entry_probability = 0.99
    store.delete_run(day)
    empty = scan(day, settings=quiet)
    assert empty.active == []
    frame = pd.read_csv(empty.files["csv"])
    assert frame.empty and {"symbol", "horizon", "side", "stop", "target"} <= set(frame.columns)
    assert json.loads(Path(empty.files["json"]).read_text())["signals"] == []


# --------------------------------------------------------------------------- (e) the cache


def test_model_cache_loads_once_and_follows_promotion(
    market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path / "models", family="turbomode")
    loads: list[Path] = []
    real_load = StackedEnsemble.load

    def counting_load(directory: Path | str, threads: int = 1, **kw: Any) -> StackedEnsemble:
        loads.append(Path(directory))
        return real_load(directory, threads=threads, **kw)

    monkeypatch.setattr(StackedEnsemble, "load", staticmethod(counting_load))
    key = "Materials/1d"
    v1 = _register(registry, key, market.artifacts[1])
    cache = ModelCache(registry)
    assert cache.get("Utilities/1d") is None and loads == []

    first = cache.get(key)
    assert first is not None and first[1] == v1 and len(loads) == 1
    again = cache.get(key)
    assert again is not None and again[0] is first[0] and len(loads) == 1

    v2 = registry.register(key, {p.name: p for p in market.artifacts[5].iterdir()}, {})
    unpromoted = cache.get(key)
    assert unpromoted is not None and unpromoted[0] is first[0] and len(loads) == 1
    registry.promote(key, v2)
    promoted = cache.get(key)
    assert promoted is not None and promoted[1] == v2 != v1
    assert promoted[0] is not first[0] and promoted[0].horizon == 5 and len(loads) == 2
    assert len(cache) == 1  # the superseded version left the cache

    registry.rollback(key)
    back = cache.get(key)
    assert back is not None and back[1] == v1 and back[0].horizon == 1 and len(loads) == 3

    small = ModelCache(registry, maxsize=2)
    for k in ("Energy/1d", "Financials/1d"):
        _register(registry, k, market.artifacts[1])
    for k in (key, "Energy/1d", "Financials/1d"):
        small.get(k)
    assert len(small) == 2 and len(loads) == 6
    small.get("Financials/1d")
    assert len(loads) == 6  # still cached
    small.get(key)
    assert len(loads) == 7  # the least recently used was evicted


# --------------------------------------------------------------------------- (f) pure parts


def _signal(symbol: str, side: str, day: date, close: float, **kw: Any) -> Signal:
    values: dict[str, Any] = {
        "symbol": symbol,
        "sector": "Industrials",
        "cap_class": "large",
        "horizon": 5,
        "side": side,
        "signal_date": day,
        "p_buy": 0.7 if side == "BUY" else 0.1,
        "p_hold": 0.2,
        "p_sell": 0.1 if side == "BUY" else 0.7,
        "confidence": 0.7,
        "close": close,
        "atr": 2.0,
        "entry_low": close * 0.97,
        "entry_high": close * 1.03,
        "stop": close - 4.0 if side == "BUY" else close + 4.0,
        "target": close + 10.0 if side == "BUY" else close - 10.0,
        "stop_distance": 4.0,
        "model_version": "v1",
    }
    values.update(kw)
    return Signal(**values)


def _held(symbol: str, entry: date, **kw: Any) -> Position:
    """A 5-day long of Industrials entered at 100 on ``entry``: stop 95, target 112.5."""
    values: dict[str, Any] = {
        "symbol": symbol,
        "state": "long",
        "sector": "Industrials",
        "horizon": 5,
        "entry_date": entry,
        "entry_price": 100.0,
        "stop": 95.0,
        "target": 112.5,
        "initial_stop_distance": 5.0,
        "size": 1.0,
        "confidence": 0.7,
        "atr_at_entry": 2.0,
    }
    values.update(kw)
    return Position(**values)


def test_manage_book_opens_only_symbols_flat_at_the_open() -> None:
    """STOPPED is held at D's open and stopped out during D: its entry signal must not open
    a second position at that same open. EXIT leaves at the open (last night's signal exit),
    so it may reverse there. NEW's bar has its open a rounding error above its high, as
    validated real data can: the bar is used, not refused."""
    d0, d1, d2 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)
    held = {sym: _held(sym, d0, version=3) for sym in ("STOPPED", "EXIT")}
    bars = pd.DataFrame(
        {
            "open": [100.0, 100.0, 50.0],
            "high": [101.0, 101.0, 50.0 - 1e-12],
            "low": [94.0, 99.0, 49.0],
            "close": [96.0, 100.5, 49.5],
        },
        index=pd.Index(["STOPPED", "EXIT", "NEW"], name="symbol"),
    )
    entries = [
        _signal("STOPPED", "BUY", d1, 100.0),
        _signal("EXIT", "SELL", d1, 100.0),
        _signal("NEW", "BUY", d1, 50.0, confidence=0.6),
        _signal("NEW", "BUY", d1, 50.0, horizon=2, confidence=0.8),
    ]
    book, events = manage_book(held, bars, d2, entries, ["EXIT"], Settings())

    kinds = [(e.symbol, e.kind) for e in events]
    assert ("STOPPED", "stop") in kinds and ("STOPPED", "open") not in kinds
    assert book["STOPPED"].state == "flat" and book["STOPPED"].version == 3
    assert kinds.index(("EXIT", "signal_exit")) < kinds.index(("EXIT", "open"))
    assert (book["EXIT"].state, book["EXIT"].entry_price, book["EXIT"].version) == (
        "short",
        100.0,
        3,
    )
    assert (book["NEW"].state, book["NEW"].horizon, book["NEW"].entry_price) == ("long", 2, 50.0)
    assert held["STOPPED"].state == "long"  # the input book is not mutated


class _Model:
    features: ClassVar[list[str]] = ["atr_pct_14", "f1"]

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.fail:
            raise ValueError("feature frame lacks 3 model feature(s)")
        return np.tile([0.2, 0.3, 0.5], (len(X), 1))


class _Models:
    """A ModelCache stand-in: one key fails to load, one to predict, the rest work."""

    def get(self, key: str) -> tuple[_Model, str] | None:
        if key.startswith("Energy"):
            return None
        if key == "Financials/2d":
            raise OSError("ensemble.json: no such file")
        return _Model(fail=key == "Industrials/1d"), f"v-{key}"


def test_score_universe_sets_broken_models_aside_and_goes_on() -> None:
    members = pd.DataFrame(
        {
            "symbol": ["A", "B", "C", "D"],
            "sector": ["Financials", "Industrials", "Energy", "Materials"],
            "cap_class": "large",
        }
    )
    vectors = pd.DataFrame({"symbol": ["A", "B", "C", "D"], "atr_pct_14": 0.1, "f1": 0.5})
    bars = pd.DataFrame({"symbol": ["A", "B", "C", "D"], "open": 10.0, "close": 10.0})
    scores, failures, missing, versions = score_universe(
        vectors,
        members,
        bars,
        _Models(),  # type: ignore[arg-type]
        [1, 2],
    )
    assert sorted(zip(scores["symbol"], scores["horizon"], strict=True)) == [
        ("A", 1),
        ("B", 2),
        ("D", 1),
        ("D", 2),
    ]
    assert failures == {"C": "no production model for Energy (any horizon)"}
    assert missing[:2] == ["Energy/1d", "Energy/2d"]
    assert missing[2].startswith("Financials/2d (failed to load: ensemble.json")
    assert missing[3].startswith("Industrials/1d (failed to predict: feature frame lacks")
    assert set(versions) == {"Financials/1d", "Industrials/2d", "Materials/1d", "Materials/2d"}


def test_tree_models_read_no_history(market: Market, scan: Callable[..., ScanResult]) -> None:
    """Trees score tonight's vectors alone: the history reader (for sequence learners) is
    never called, and the scores are those of the default reader."""
    calls: list[int] = []

    def reader(symbols: Any, days: int) -> pd.DataFrame:
        calls.append(days)
        raise AssertionError("a tree-only model asked for history")

    day = market.dates[-2]
    with_reader = scan(day, history=reader)
    assert calls == [] and not any("failed" in m for m in with_reader.missing_models)
    pd.testing.assert_frame_equal(with_reader.scores, scan(day).scores)


# --------------------------------------------------------------------------- dated features


@pytest.fixture(scope="module")
def feast_settings(market: Market, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The market's features in a Feast store of their own (offline tables + definitions)."""
    from turbomode import feature_store as fs

    settings = market.settings.model_copy(deep=True)
    settings.data.data_dir = tmp_path_factory.mktemp("feast_scan")
    fs.write_offline_tables(market.features, settings)
    fs.apply(settings, "local")
    return settings


def test_back_dated_scan_reads_point_in_time_never_newer(
    market: Market, feast_settings: Settings, store: SignalStore
) -> None:
    from turbomode import feature_store as fs

    fs.materialize(fs.open_store(feast_settings), feast_settings)  # online: the newest date
    md = load_clean(market.settings)
    symbols = sorted(market.members["symbol"])
    for day in (market.dates[-6], market.dates[-3]):
        dated = fs.vectors_for_date(feast_settings, symbols, day)
        assert dated.source == "offline"
        assert all(d is None or d <= day for d in dated.dates.values())
        expect = market.vectors(day).set_index("symbol")
        on_day = market.features.loc[market.features["date"] == pd.Timestamp(day), "symbol"]
        expect = expect.loc[sorted(on_day)]  # a delisted symbol has no vector that day
        assert {s for s, d in dated.dates.items() if d == day} == set(expect.index)
        got = dated.frame.set_index("symbol").loc[expect.index]
        np.testing.assert_array_equal(got.to_numpy(), expect.to_numpy())

    day = market.dates[-6]
    result = run_scan(feast_settings, store=store, models=market.models, scan_date=day, market=md)
    assert result.feature_source == "offline" and result.stale_features == 0
    reference = run_scan(
        feast_settings,
        store=store,
        models=market.models,
        scan_date=day,
        market=md,
        vectors=market.vectors(day),
    )
    pd.testing.assert_frame_equal(result.scores, reference.scores)


def test_stale_online_store_is_detected_and_counted(
    market: Market, feast_settings: Settings, store: SignalStore
) -> None:
    from turbomode import feature_store as fs

    settings = feast_settings.model_copy(deep=True)
    settings.data.data_dir = Path(str(feast_settings.data.data_dir) + "_stale")
    fs.write_offline_tables(
        market.features[market.features["date"] < pd.Timestamp(market.dates[-1])], settings
    )
    fs.materialize(fs.apply(settings, "local"), settings)  # online: yesterday's vectors
    md = load_clean(market.settings)
    result = run_scan(settings, store=store, models=market.models, market=md)
    assert result.scan_date == market.dates[-1]
    stale = [s for s, r in result.failures.items() if "older than the scan date" in r]
    absent = [s for s, r in result.failures.items() if r == "no features in the online store"]
    assert result.stale_features == len(stale) >= len(market.members) - 2
    assert len(stale) + len(absent) == len(market.members)  # absent: delisted before
    assert result.n_scored == 0 and result.scores.empty
    doc = json.loads(Path(result.files["json"]).read_text())
    assert doc["stale_features"] == len(stale)


def test_no_new_bar_is_not_rescanned(market: Market, store: SignalStore) -> None:
    from turbomode.signals.scan import NoNewBarError

    newest = market.dates[-1]
    md = load_clean(market.settings)
    first = run_scan(
        market.settings,
        store=store,
        models=market.models,
        vectors=market.vectors(newest),
        market=md,
    )
    assert first.scan_date == newest
    with pytest.raises(NoNewBarError, match="no new bar since the last scan"):
        run_scan(
            market.settings,
            store=store,
            models=market.models,
            vectors=market.vectors(newest),
            market=md,
        )
    assert len(store.runs()) == 1
    # given on purpose, a date is re-run (and replaces its run)
    run_scan(
        market.settings,
        store=store,
        models=market.models,
        scan_date=newest,
        vectors=market.vectors(newest),
        market=md,
    )
    assert len(store.runs()) == 1


def test_vectors_dated_after_the_scan_date_are_refused(market: Market, store: SignalStore) -> None:
    from turbomode.signals.scan import ScanError

    day = market.dates[-3]
    vectors = market.vectors(day)
    dates = dict.fromkeys(vectors["symbol"], market.dates[-1])
    with pytest.raises(ScanError, match="refusing a look-ahead"):
        run_scan(
            market.settings,
            store=store,
            models=market.models,
            scan_date=day,
            vectors=vectors,
            vector_dates=dates,
        )


def test_a_crash_after_the_commit_leaves_signals_showing_the_committed_scan(
    market: Market, store: SignalStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Killed between the store's commit and latest_scan.json: the next `turbomode signals`
    shows the committed night and repairs the file."""
    from typer.testing import CliRunner

    import turbomode.signals.scan as scan_mod
    from turbomode.cli.main import app

    settings = market.settings.model_copy(deep=True)
    settings.data.data_dir = tmp_path
    md = load_clean(market.settings)
    first, second = market.dates[-3], market.dates[-2]
    run_scan(
        settings,
        store=store,
        models=market.models,
        scan_date=first,
        vectors=market.vectors(first),
        market=md,
    )
    latest = tmp_path / "scans" / "latest_scan.json"
    assert json.loads(latest.read_text())["scan_date"] == str(first)

    def killed(*_a: Any, **_k: Any) -> dict[str, str]:
        raise KeyboardInterrupt  # the process dies after the commit, before the file

    monkeypatch.setattr(scan_mod, "write_outputs", killed)
    with pytest.raises(KeyboardInterrupt):
        run_scan(
            settings,
            store=store,
            models=market.models,
            scan_date=second,
            vectors=market.vectors(second),
            market=md,
        )
    monkeypatch.undo()
    assert json.loads(latest.read_text())["scan_date"] == str(first)  # the file lags
    assert {d.date() for d in store.runs()["scan_date"]} == {first, second}

    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", store.url)
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "signals"])
    assert res.exit_code == 0, res.output
    assert f"Scan {second}" in res.output
    doc = json.loads(latest.read_text())
    assert doc["scan_date"] == str(second) and doc["run_id"] == store.run(second).id
    committed = store.run(second).summary["document"]
    assert doc["signals"] == committed["signals"] and doc["token"] == committed["token"]


def test_nightly_calls_on_open_positions_read_the_thresholds_as_the_mode_does() -> None:
    """In quantile mode the night's thresholds are lifts: an open long whose P(SELL) is twice
    its prior, past the lift threshold, is called SELL (and exits after ``persistence`` such
    nights when P(SELL) also passes ``exit_probability``) — compared as raw probabilities,
    0.5 against a lift of 1.5, every call was HOLD and no position ever exited on a signal."""
    from turbomode.signals.scan import record_calls

    d0 = date(2024, 3, 4)
    settings = Settings(
        signals={"threshold_mode": "quantile", "exit_probability": 0.45, "persistence": 2}
    )
    limits = {"buy": 1.5, "sell": 1.5}
    scores = pd.DataFrame(
        {
            "symbol": ["LONG", "KEEP"],
            "horizon": [5, 5],
            "p_buy": [0.2, 0.5],
            "p_hold": [0.3, 0.3],
            "p_sell": [0.5, 0.2],
            "prior_buy": [0.4, 0.4],
            "prior_sell": [0.25, 0.25],
        }
    )
    book = {sym: _held(sym, d0) for sym in ("LONG", "KEEP")}
    exits: list[str] = []
    for night in range(2):
        book, events, exits = record_calls(
            book, scores, d0 + timedelta(days=night + 1), settings, limits
        )
        calls = {e.symbol: json.loads(str(e.detail))["call"] for e in events}
        assert calls == {"LONG": "SELL", "KEEP": "HOLD"}  # KEEP: lift 1.25 < 1.5
    assert exits == ["LONG"]
    fixed = settings.model_copy(
        update={"signals": settings.signals.model_copy(update={"threshold_mode": "fixed"})}
    )
    _, events, _ = record_calls(book, scores, d0, fixed, {"buy": 0.45, "sell": 0.45})
    assert {e.symbol: json.loads(str(e.detail))["call"] for e in events} == {
        "LONG": "SELL",
        "KEEP": "BUY",
    }


# --------------------------------------------------------------------------- explanations


def test_issued_signals_carry_explanations_that_sum_to_their_score(
    market: Market, store: SignalStore, scan: Callable[..., ScanResult]
) -> None:
    d1, d2 = market.dates[-2], market.dates[-1]
    night1 = scan(d1)
    issued = [s for s in night1.active if s.signal_date == d1]
    assert issued, "the fixture issues signals"
    stored = store.explanations()
    assert set(stored) == {(s.symbol, s.horizon, d1) for s in issued}
    vectors = market.vectors(d1)
    for s in issued:
        why = stored[(s.symbol, s.horizon, d1)]
        assert why["model_version"] == s.model_version
        assert why["value"] == pytest.approx(s.p_buy - s.p_sell, abs=1e-9)
        assert why["base"] + sum(why["contributions"].values()) == pytest.approx(
            why["value"], abs=1e-6
        )
        top = why["top"]
        assert len(top) == 5
        size = [abs(t["contribution"]) for t in top]
        assert size == sorted(size, reverse=True)
        assert min(size) >= sorted(map(abs, why["contributions"].values()))[-5]
        for t in top:
            column = vectors[t["feature"]].to_numpy(dtype=float)
            value = float(vectors.set_index("symbol").loc[s.symbol, t["feature"]])
            assert t["value"] == pytest.approx(value)
            assert t["percentile"] == pytest.approx(
                100 * np.mean(column[np.isfinite(column)] <= value)
            )
            assert t["description"] and t["group"]
    doc = json.loads(Path(night1.files["json"]).read_text())
    listed = {(r["symbol"], r["horizon"]): r["explanation"] for r in doc["signals"]}
    for s in issued:
        assert listed[s.key]["top"] == stored[(s.symbol, s.horizon, d1)]["top"]
        assert "contributions" not in listed[s.key]
    # Night 2: a signal carried over keeps the explanation of the night that issued it.
    night2 = scan(d2)
    carried = [s for s in night2.active if s.signal_date == d1]
    assert carried, "the fixture carries a signal over"
    for s in carried:
        assert night2.explanations[s.key] == stored[(s.symbol, s.horizon, d1)]
    quiet = scan(d2, explain=False)  # the bench's baseline: nothing issued tonight explained
    assert not any(k[2] == d2 for k in store.explanations())
    assert set(quiet.explanations) == {s.key for s in carried}
