"""Drift in the night's scan and in ``turbomode drift``, on a small synthetic market with a
tiny real ensemble whose manifest carries a training reference: both windows are measured,
the figures equal a direct computation, a planted shift shows, the gauges reach a real
Pushgateway, and the drift alert fires in a real Prometheus on a pushed value.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import TINY
from turbomode import feature_store as fs
from turbomode.config import Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.features.engine import build_features
from turbomode.job_metrics import JobMetrics
from turbomode.labels import make_labels
from turbomode.models import drift
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.registry import ModelRegistry
from turbomode.signals import drift as scan_drift
from turbomode.signals.scan import ModelCache, run_scan
from turbomode.store import SignalStore
from turbomode.workspace import with_data_dir

SECTORS = ("Financials", "Information Technology")
SYNTHETIC = {"n_symbols": 48, "n_days": 320}
SHIFTED = "ret_5"


@dataclass
class World:
    settings: Settings
    features: pd.DataFrame
    members: pd.DataFrame
    registry: ModelRegistry
    versions: dict[str, str]
    day: date

    def vectors(self, day: date) -> pd.DataFrame:
        cols = fs.FeatureLayout.from_registry().all
        rows = self.features[self.features["date"] == pd.Timestamp(day)]
        return rows[["symbol", *cols]].astype(dict.fromkeys(cols, "float32")).reset_index(drop=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("drift")
    settings = with_data_dir(Settings(synthetic=SYNTHETIC), tmp)
    ingest(settings)
    md = load_clean(settings)
    sectors = md.universe.sector_map()
    feats = build_features(md.prices, md.market, sectors).frame
    labels = make_labels(md.prices, settings.labels, sectors=sectors)
    names = fs.model_features(settings)
    data = feats.merge(labels, on=["symbol", "date"])
    data["sector"] = data["symbol"].map(sectors)
    cut = data["date"].max() - pd.Timedelta(days=120)
    train = data[(data["date"] >= cut - pd.Timedelta(days=150)) & (data["date"] < cut)]
    train = train[train["label_1"].notna()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN warm-up columns
        model = StackedEnsemble(names, 1, TINY).fit(
            train[names], train["label_1"].to_numpy(dtype=np.int64), train["date"].to_numpy()
        )
    model.save(tmp / "artifact")
    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    versions = {}
    for sector in SECTORS:
        rows = train[train["sector"] == sector]
        test = data[(data["sector"] == sector) & (data["date"] >= cut)]
        reference = drift.build_reference(
            rows, names, drift.score_of(model.predict_proba(test[names]))
        )
        key = f"{sector}/1d"
        files = {p.name: p for p in (tmp / "artifact").iterdir() if p.is_file()}
        manifest = {"sector": sector, "horizon": 1, "features": names}
        version = registry.register(key, files, {**manifest, "drift_reference": reference})
        registry.promote(key, version)
        versions[key] = version
    fs.write_offline_tables(feats, settings)
    fs.materialize(fs.apply(settings, "local"), settings)
    return World(
        settings,
        feats,
        md.universe.members[["symbol", "sector"]],
        registry,
        versions,
        pd.Timestamp(md.prices["date"].max()).date(),
    )


def _scan(world: World, tmp_path: Path, vectors: pd.DataFrame, gateway: str | None = None):
    settings = world.settings.model_copy(deep=True)
    settings.stores.pushgateway_url = gateway
    store = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    try:
        return run_scan(
            settings,
            store=store,
            models=ModelCache(world.registry),
            scan_date=world.day,
            vectors=vectors,
            market=load_clean(settings),
        )
    finally:
        store.dispose()


def test_the_scan_measures_both_windows_as_a_direct_computation_does(
    world: World, tmp_path: Path
) -> None:
    result = _scan(world, tmp_path, world.vectors(world.day))
    assert {d.key for d in result.drift} == set(world.versions)
    for d in result.drift:
        sector = d.key.split("/")[0]
        members = set(world.members.loc[world.members["sector"] == sector, "symbol"])
        window = world.features[world.features["symbol"].isin(members)]
        dates = sorted(window["date"].unique())[-drift.RECENT_DAYS :]
        recent = window[window["date"].isin(dates)]
        tonight = world.vectors(world.day)
        tonight = tonight[tonight["symbol"].isin(members)]
        reference = world.registry.manifest(d.key, d.version)["drift_reference"]
        expected = drift.key_drift(d.key, d.version, reference, {"tonight": tonight, "20d": recent})
        got = d.table.set_index(["window", "feature"]).sort_index()
        want = expected.table.set_index(["window", "feature"]).sort_index()
        np.testing.assert_allclose(got["psi"], want["psi"], rtol=1e-5, atol=1e-6)
        assert (got["n"] == want["n"]).all()
        assert set(d.score) == {"tonight", "20d"}
        assert d.score_rows["20d"] == drift.RECENT_DAYS * len(tonight)
    assert result.drift[0].count_over("tonight", drift.MAJOR) < len(result.drift[0].table) / 2


def test_a_planted_shift_shows_and_reaches_a_real_pushgateway(world: World, tmp_path: Path) -> None:
    from tests.monitoring import pushgateway
    from tests.test_job_metrics import _pushed

    vectors = world.vectors(world.day)
    vectors[SHIFTED] = vectors[SHIFTED].abs() * 50 + 10.0  # beyond anything in training
    with pushgateway(tmp_path) as gw:
        result = _scan(world, tmp_path, vectors, gw.url.removeprefix("http://"))
        for d in result.drift:
            tonight = d.table[d.table["window"] == "tonight"].set_index("feature")["psi"]
            # every stock beyond the training maximum: the largest PSI the reference allows
            ref = drift.Reference.from_dict(
                world.registry.manifest(d.key, d.version)["drift_reference"]["features"][SHIFTED]
            )
            beyond = np.zeros(ref.bins + 2)
            beyond[-1] = 1.0
            assert tonight[SHIFTED] == pytest.approx(drift.psi(ref.expected_all(), beyond))
            assert tonight[SHIFTED] > 10.0 and d.count_unusual("tonight") >= 1
        assert _pushed(gw.url, "turbomode_job_success", "turbomode_scan") == 1.0
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(gw.url + "/metrics", timeout=10).text
        pushed = {
            (s.labels["sector"], s.labels["window"], s.labels["threshold"]): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "turbomode_feature_drift_features"
        }
        for d in result.drift:
            sector = d.key.split("/")[0]
            for window in drift.WINDOWS:
                assert pushed[(sector, window, "0.25")] == d.count_over(window, drift.MAJOR)
    doc = result.drift[0]
    assert doc.count_over("tonight", drift.MAJOR) >= 1


@pytest.mark.integration
def test_the_drift_alert_fires_in_a_real_prometheus(world: World, tmp_path: Path) -> None:
    """Measured drift → JobMetrics → a real Pushgateway → a real Prometheus with the project's
    rules (the alert's ``for`` set to 0 here; promtool's tests check the wait)."""
    from tests.monitoring import CONFIG, prometheus, pushgateway

    # A stationary table made here (not market data): 40 features of 10 stocks over 1,220
    # days; a model "trained" on the first 1,200 (60 blocks calibrate it). A fresh block beats
    # a feature's usual level by chance about 1 time in 61, so calm stays far below 10.
    rng = np.random.default_rng(2020)
    names = [f"x{i}" for i in range(40)]
    days = np.repeat(pd.bdate_range("2015-01-01", periods=1220).to_numpy(), 10)
    table = pd.DataFrame(rng.normal(size=(len(days), len(names))), columns=names)
    table["date"] = days
    train, recent = table.iloc[: 1200 * 10], table.iloc[1200 * 10 :]
    reference = drift.build_reference(train, names)
    shifted = recent.copy()
    shifted[names] = shifted[names] * 3 + 1  # every feature moves: a market unlike training
    version = world.versions["Financials/1d"]
    calm = drift.key_drift("Information Technology/1d", version, reference, {"20d": recent})
    moved = drift.key_drift("Financials/1d", version, reference, {"20d": shifted})
    assert moved.count_unusual("20d") == 40 and calm.count_unusual("20d") < 5

    rules = yaml.safe_load((CONFIG.parent / "turbomode-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "TurboModeFeatureDrift":
                rule["for"] = "0s"
    work = tmp_path / "prom"
    work.mkdir()
    (work / "turbomode-rules.yml").write_text(yaml.safe_dump(rules))
    with pushgateway(tmp_path) as gw:
        address = gw.url.removeprefix("http://")
        metrics = JobMetrics("scan")
        scan_drift.export(metrics, [moved, calm])
        assert metrics.push(address)
        with prometheus(tmp_path, "127.0.0.1:9", address, rules_dir=work) as prom:
            firing = prom.wait_for('ALERTS{alertname="TurboModeFeatureDrift",alertstate="firing"}')
            assert [(a["metric"]["sector"], a["metric"]["horizon"]) for a in firing] == [
                ("Financials", "1")
            ]


def test_turbomode_drift_prints_the_table_and_one_key(world: World, tmp_path: Path) -> None:
    from turbomode.cli.main import app

    config = tmp_path / "turbomode.yaml"
    config.write_text(yaml.safe_dump({"synthetic": SYNTHETIC}))
    base = ["--config", str(config), "--data-dir", str(world.settings.data.data_dir), "drift"]
    runner = CliRunner()
    out = runner.invoke(app, [*base, "--json"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["date"] == str(world.day) and doc["window"] == "20d"
    assert {m["key"] for m in doc["models"]} == set(world.versions)
    assert all(m["features"] > 50 for m in doc["models"])
    one = runner.invoke(app, [*base, "--key", "Financials/1d", "--window", "tonight", "--json"])
    assert one.exit_code == 0, one.output
    rows = json.loads(one.stdout)
    assert rows[0]["psi"] == max(r["psi"] for r in rows if r["psi"] is not None)
    bad = runner.invoke(app, [*base, "--key", "Nope/1d"])
    assert bad.exit_code == 2 and "no production model with drift for 'Nope/1d'" in bad.output
    assert "Traceback" not in bad.output
    late = runner.invoke(app, [*base, "--date", "2099-01-01"])
    assert late.exit_code == 2 and "no bar on 2099-01-01" in late.output
