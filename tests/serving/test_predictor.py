"""The Predictor in process on the built market: the memo answers only what a fresh
computation would, promotions are followed on reload, changed files are re-read, a store
outage is a 503 and not a crash, readiness says which check failed, thresholds follow the
settings, and predictions stay correct while versions are swapped under concurrent load."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from tests.serving.builder import NO_MODEL, ServedMarket
from turbomode import feature_store as fs
from turbomode.models.registry import ModelRegistry
from turbomode.serving.predictor import Predictor, ServingError
from turbomode.serving.settings import ServingSettings

pytestmark = pytest.mark.slow


def scored_symbol(market: ServedMarket, sector: str = "Information Technology") -> str:
    return next(s for s in market.symbols_in(sector) if s not in market.scan.failures)


@pytest.fixture
def predictor(market: ServedMarket, tmp_path: Path) -> Predictor:
    scan_copy = tmp_path / "latest_scan.json"
    shutil.copyfile(market.scan.files["json"], scan_copy)
    return Predictor(market.settings, ServingSettings(scan_file=scan_copy, health_cache_s=0))


class FakeOnlineStore:
    """Feast's get_online_features → to_dict, from vectors set by the test (or an outage)."""

    def __init__(self, vectors: dict[str, list[float]], stamp: int = 1_554_854_400) -> None:
        self.vectors = vectors
        self.stamp = stamp
        self.down = False

    def get_online_features(self, features: list[str], entity_rows: dict[str, list[str]]) -> Any:
        if self.down:
            raise ConnectionError("redis: connection refused")
        symbols = entity_rows["symbol"]
        found = [self.vectors.get(s) for s in symbols]
        data = {
            "symbol": symbols,
            "vector": found,
            "vector__ts": [self.stamp if v is not None else None for v in found],
        }

        class Response:
            def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
                return data

        return Response()


def test_the_memo_answers_exactly_what_a_fresh_computation_does(
    market: ServedMarket, predictor: Predictor
) -> None:
    sym = scored_symbol(market)
    first = predictor.predict(sym, 1)
    assert predictor.predict(sym, 1) is first  # remembered
    fresh = Predictor(market.settings, ServingSettings(memo_size=0)).predict(sym, 1)
    assert fresh == first

    vector = market.newest_vector(sym).to_numpy(dtype=np.float64)
    store = FakeOnlineStore({sym: vector.tolist()})
    faked = Predictor(market.settings, ServingSettings(), store=store)
    same = faked.predict(sym, 1)
    assert same.p_buy == pytest.approx(first.p_buy)
    store.vectors[sym] = np.where(np.isnan(vector), vector, vector * 1.5).tolist()
    moved = faked.predict(sym, 1)  # a re-materialized vector is scored afresh
    assert moved.p_buy != pytest.approx(same.p_buy, abs=1e-12) or moved.p_sell != pytest.approx(
        same.p_sell, abs=1e-12
    )


def test_a_promotion_is_followed_on_reload_and_the_memo_drops_old_answers(
    market: ServedMarket, predictor: Predictor
) -> None:
    sym = scored_symbol(market)
    key = f"{market.sector_of(sym)}/1d"
    before = predictor.predict(sym, 1)
    new = market.register(key, 5)
    try:
        assert predictor.predict(sym, 1) is before  # until the watcher looks
        result = predictor.reload()
        assert [(s.key, s.old, s.new) for s in result.swaps] == [(key, before.model_version, new)]
        after = predictor.predict(sym, 1)
        assert after.model_version == new
        assert (after.p_buy, after.p_sell) != (before.p_buy, before.p_sell)
    finally:
        market.registry.rollback(key)
    predictor.reload()
    assert predictor.predict(sym, 1) == before


def test_concurrent_predictions_while_versions_swap(
    market: ServedMarket, predictor: Predictor
) -> None:
    sym = scored_symbol(market)
    key = f"{market.sector_of(sym)}/1d"
    old = predictor.predict(sym, 1)
    new_version = market.register(key, 5, promote=False)
    expected = {old.model_version: (old.p_buy, old.p_sell)}
    errors: list[BaseException] = []
    seen: list[tuple[str, float, float]] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                p = predictor.predict_batch([sym, "NOPE"], [1]).predictions[0]
                seen.append((p.model_version, p.p_buy, p.p_sell))
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            if i % 2 == 0:
                market.registry.promote(key, new_version)
            else:
                market.registry.rollback(key)
            predictor.reload()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if market.registry.production(key) != old.model_version:
            market.registry.rollback(key)
        predictor.reload()
    assert not errors, errors[:3]
    fresh_new = Predictor(market.settings, ServingSettings(memo_size=0))
    market.registry.promote(key, new_version)
    try:
        p = fresh_new.predict(sym, 1)
        expected[new_version] = (p.p_buy, p.p_sell)
    finally:
        market.registry.rollback(key)
    assert {v for v, _, _ in seen} <= set(expected) and len(seen) > 10
    for version, p_buy, p_sell in seen:  # every answer is its version's answer
        assert (p_buy, p_sell) == pytest.approx(expected[version])


def test_changed_files_are_reread(market: ServedMarket, predictor: Predictor) -> None:
    assert predictor.reload_files() == (False, False)
    doc = json.loads(predictor.scan_file.read_text())
    doc["thresholds"] = {"buy": 99.0, "sell": 98.0}  # quantile mode: lifts over the prior
    predictor.scan_file.write_text(json.dumps(doc))
    os.utime(predictor.scan_file, ns=(1, 1))  # a different mtime, whatever the clock
    assert predictor.reload_files() == (False, True)
    assert predictor.current_thresholds() == {"buy": 99.0, "sell": 98.0}
    sym = scored_symbol(market)
    assert predictor.predict(sym, 1).signal == "HOLD"  # no side is 98× likelier than its prior

    fixed = market.settings.model_copy(deep=True)
    fixed.signals.threshold_mode = "fixed"
    assert Predictor(fixed).current_thresholds() == {"buy": 0.6, "sell": 0.6}


def test_a_store_outage_is_a_503_and_readiness_names_the_failing_check(
    market: ServedMarket, tmp_path: Path
) -> None:
    sym = scored_symbol(market)
    store = FakeOnlineStore({sym: market.newest_vector(sym).tolist()})
    predictor = Predictor(market.settings, ServingSettings(health_cache_s=0), store=store)
    store.down = True
    with pytest.raises(ServingError) as caught:
        predictor.predict(sym, 1)
    assert caught.value.status == 503 and "connection refused" in caught.value.message
    health = predictor.health()
    assert health.status == "not ready"
    assert not health.checks["online_store"].ok and health.checks["models"].ok

    store.down = False  # up, but the probe symbol has no vector: not materialized
    store.vectors = {}
    health = predictor.health()
    assert health.status == "not ready" and "materialize" in health.checks["online_store"].detail

    empty = market.settings.model_copy(deep=True)
    empty.stores.model_registry_uri = str(tmp_path / "no-models")
    bare = Predictor(empty, ServingSettings(health_cache_s=0), store=fs.open_store(market.settings))
    health = bare.health()
    assert health.status == "not ready" and "turbomode train" in health.checks["models"].detail
    assert health.checks["online_store"].ok

    nothing = market.settings.model_copy(deep=True)
    nothing.data.data_dir = tmp_path / "no-data"
    alone = Predictor(nothing, ServingSettings(health_cache_s=0))
    assert alone.health().checks["market"].detail.startswith("no clean store")
    with pytest.raises(ServingError) as caught:
        alone.predict(sym, 1)
    assert caught.value.status == 503


def test_admin_token_rules(market: ServedMarket) -> None:
    closed = Predictor(market.settings, ServingSettings())
    with pytest.raises(ServingError) as caught:
        closed.authorize("Bearer anything")
    assert caught.value.status == 403
    guarded = Predictor(market.settings, ServingSettings(admin_token=SecretStr("s3cret")))
    for header in (None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret"):
        with pytest.raises(ServingError) as caught:
            guarded.authorize(header)
        assert caught.value.status == 401
    guarded.authorize("Bearer s3cret")
    guarded.authorize("bearer  s3cret ")


def test_remembered_failures_end_when_a_model_arrives(market: ServedMarket, tmp_path: Path) -> None:
    """'No production model' is remembered like an answer, until a promotion for that key is
    seen: then the symbol is scored."""
    settings = market.settings.model_copy(deep=True)
    shutil.copytree(market.registry.root, tmp_path / "models")
    settings.stores.model_registry_uri = str(tmp_path / "models")
    predictor = Predictor(settings, ServingSettings())
    sym = market.symbols_in(NO_MODEL)[0]
    assert market.scan.failures[sym].startswith("no production model")
    first = predictor.predict_batch([sym], [1])
    assert first.predictions == []
    assert [e.error for e in first.errors] == [f"no production model for {NO_MODEL}/1d"]
    assert predictor.predict_batch([sym], [1]) == first  # remembered

    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    files = {p.name: p for p in market.artifacts[1].iterdir()}
    version = registry.register(f"{NO_MODEL}/1d", files, {"source": "test"})
    registry.promote(f"{NO_MODEL}/1d", version)
    assert predictor.predict_batch([sym], [1]) == first  # until the watcher looks
    predictor.reload()
    after = predictor.predict_batch([sym], [1])
    assert [(p.symbol, p.model_version) for p in after.predictions] == [(sym, version)]
    assert after.errors == []
