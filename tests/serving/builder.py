"""A market for the service to serve, built by the project's own pipeline into a directory:
synthetic prices → ingest (clean store) → features → Feast offline tables, definitions and
the online store → small stacked ensembles registered and promoted → nightly scans on a few
dates (so the active signals have different ages) → a settings file that points a server here.

Used by the serving tests (24 symbols, tiny ensembles: about 30 s on 2 cores) and by
benchmarks/bench_serving.py (500 symbols, default-size ensembles or bench_train's).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import TINY
from turbomode import feature_store as fs
from turbomode.config import GICS_SECTORS, ModelSettings, Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.features.engine import build_features
from turbomode.labels import make_labels
from turbomode.models.registry import ModelRegistry
from turbomode.models.train import fit_model, saved_model_dirs
from turbomode.signals.scan import ModelCache, ScanResult, run_scan

NO_MODEL = "Utilities"  # no production model at all
ONLY_1D = "Energy"  # a production model for 1 day only


@dataclass
class ServedMarket:
    """Everything a test needs to know about the market a server is pointed at."""

    root: Path
    settings: Settings
    config_file: Path
    registry: ModelRegistry
    artifacts: dict[int, Path]
    features: pd.DataFrame
    members: pd.DataFrame
    scan: ScanResult

    @property
    def env(self) -> dict[str, str]:
        """Environment that makes a server (or load_settings) use this market's settings."""
        return {"TURBOMODE_CONFIG": str(self.config_file)}

    def newest_vector(self, symbol: str) -> pd.Series:
        cols = fs.FeatureLayout.from_registry().all
        rows = self.features[self.features["symbol"] == symbol].sort_values("date")
        return rows[cols].iloc[-1].astype("float32")

    def sector_of(self, symbol: str) -> str:
        return str(self.members.set_index("symbol").loc[symbol, "sector"])

    def symbols_in(self, sector: str) -> list[str]:
        return sorted(self.members.loc[self.members["sector"] == sector, "symbol"])

    def register(self, key: str, horizon_artifact: int, promote: bool = True) -> str:
        """A new version of ``key`` from the ensemble trained on ``horizon_artifact`` labels."""
        directory = self.artifacts[horizon_artifact]
        files = {p.name: p for p in directory.iterdir() if p.is_file()}
        version = self.registry.register(key, files, {"source": "tests.serving"})
        if promote:
            self.registry.promote(key, version)
        return version


def _scan_dates(dates: Sequence[pd.Timestamp], offsets: Sequence[int]) -> list[date]:
    """For each calendar offset before the newest date, the last trading date at or before it."""
    newest = dates[-1]
    out = []
    for days in sorted(offsets, reverse=True):
        target = newest - pd.Timedelta(days=days)
        out.append(max(d for d in dates if d <= target).date())
    return sorted(set(out))


def build_market(
    root: Path,
    *,
    n_symbols: int = 24,
    n_days: int = 320,
    model_settings: ModelSettings = TINY,
    train_days: int = 150,
    train_rows: int | None = None,
    models_from: Path | None = None,
    scan_offsets: Sequence[int] = (13, 8, 4, 0),
) -> ServedMarket:
    """Build the market under ``root`` (see the module notes); returns its description."""
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        data={"data_dir": root / "data"},
        synthetic={"n_symbols": n_symbols, "n_days": n_days},
        stores={
            "model_registry_uri": str(root / "models"),
            "signals_url": f"sqlite:///{root / 'signals.db'}",
        },
        signals={"threshold_mode": "quantile", "threshold_quantile": 0.8, "threshold_floor": 0.05},
    )
    config_file = root / "turbomode.yaml"
    config_file.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))

    ingest(settings)
    _report, store = fs.build(settings)
    fs.materialize(store, settings)
    md = load_clean(settings)
    sectors = md.universe.sector_map()
    features = build_features(md.prices, md.market, sectors).frame

    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    artifacts: dict[int, Path] = {}
    if models_from is not None:
        _register_saved(registry, models_from, settings.labels.horizons)
    else:
        artifacts = _train(
            settings, md.prices, features, sectors, model_settings, train_days, train_rows, root
        )
        for sector in GICS_SECTORS:
            if sector == NO_MODEL:
                continue
            for h in settings.labels.horizons if sector != ONLY_1D else [1]:
                files = {p.name: p for p in artifacts[5 if h == 5 else 1].iterdir()}
                key = f"{sector}/{h}d"
                registry.promote(key, registry.register(key, files, {"source": "tests"}))

    cache = ModelCache(registry)
    dates = [pd.Timestamp(d) for d in sorted(md.prices["date"].unique())]
    cols = fs.FeatureLayout.from_registry().all
    scan: ScanResult | None = None
    days = _scan_dates(dates, scan_offsets)
    for day in days:
        if day == days[-1]:
            vectors = None  # the newest night reads Feast's online store, as in production
        else:
            upto = features[features["date"] <= pd.Timestamp(day)]
            newest = upto.groupby("symbol", sort=True).tail(1)
            vectors = newest[["symbol", *cols]].astype(dict.fromkeys(cols, "float32"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scan = run_scan(settings, models=cache, scan_date=day, vectors=vectors)
    assert scan is not None
    return ServedMarket(
        root=root,
        settings=settings,
        config_file=config_file,
        registry=registry,
        artifacts=artifacts,
        features=features,
        members=md.universe.members[["symbol", "sector", "cap_class"]].reset_index(drop=True),
        scan=scan,
    )


def _train(
    settings: Settings,
    prices: pd.DataFrame,
    features: pd.DataFrame,
    sectors: dict[str, str],
    model_settings: ModelSettings,
    train_days: int,
    train_rows: int | None,
    root: Path,
) -> dict[int, Path]:
    """One model on 1-day and one on 5-day labels over the last ``train_days``, at most
    ``train_rows`` rows (all sectors pooled: prediction cost depends on model size, not on
    what it learned)."""
    labels = make_labels(prices, settings.labels, sectors=sectors)
    cols = fs.model_features(settings)
    data = features.merge(labels, on=["symbol", "date"])
    data = data[data["date"] >= data["date"].max() - pd.Timedelta(days=train_days)]
    out: dict[int, Path] = {}
    fit = settings.model_copy(update={"models": model_settings})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN warm-up columns
        for h in (1, 5):
            rows = data[data[f"label_{h}"].notna()]
            if train_rows is not None and len(rows) > train_rows:
                rows = rows.sample(n=train_rows, random_state=0).sort_values("date")
            # The configured kind (the rank model by default): one fit serves every key.
            ens = fit_model(rows.assign(sector=rows["symbol"].map(sectors)), h, cols, fit, 1)
            out[h] = root / "artifacts" / f"{h}d"
            ens.save(out[h])
    return out


def _register_saved(registry: ModelRegistry, models_dir: Path, horizons: Sequence[int]) -> None:
    """Register and promote the models a bench_train run saved (per sector, or pooled)."""
    for key, directory in saved_model_dirs(models_dir, horizons).items():
        files = {p.name: p for p in directory.iterdir() if p.is_file()}
        registry.promote(key, registry.register(key, files, {"source": str(directory)}))
