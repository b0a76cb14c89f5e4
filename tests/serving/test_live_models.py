"""LiveModels and the prediction memo without a server: lazy single loads, a swap that loads
beside the old version while requests go on, withdrawal and reappearance of production, LRU
eviction, and a memo that never serves or keeps an answer from before a swap."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from turbomode.serving import live_models
from turbomode.serving.live_models import LiveModels, Swap
from turbomode.serving.predictor import Memo


class FakeModel:
    def __init__(self, key: str, version: str) -> None:
        self.key, self.version = key, version


class FakeRegistry:
    """Production pointers in a dict; ``load`` hands back a path naming key and version."""

    def __init__(self, pointers: dict[str, str]) -> None:
        self.pointers = dict(pointers)
        self.fail_reads = False

    def production(self, key: str) -> str | None:
        if self.fail_reads:
            raise OSError("registry unreachable")
        return self.pointers.get(key)

    def load(self, key: str, version: str) -> tuple[Path, dict[str, Any]]:
        return Path(key) / version, {}


class Loader:
    """Stands in for load_ensemble; counts loads and can hold one until released."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.hold: str | None = None
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, directory: Path | str, threads: int = 1, **_: object) -> FakeModel:
        path = Path(directory)
        version = path.name
        self.loads.append(version)
        if version == self.hold:
            self.entered.set()
            assert self.release.wait(10)
        time.sleep(0.01)  # long enough for concurrent first requests to meet
        return FakeModel(str(path.parent), version)


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> Loader:
    fake = Loader()
    monkeypatch.setattr(live_models, "load_ensemble", fake)
    return fake


def test_first_use_loads_once_even_from_many_threads(loader: Loader) -> None:
    models = LiveModels(FakeRegistry({"Energy/1d": "v1"}))
    assert len(models) == 0 and models.version("Energy/1d") is None  # lazy
    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(models.get("Energy/1d"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.loads == ["v1"]
    assert {id(m) for m, _ in got} == {id(got[0][0])} and {v for _, v in got} == {"v1"}
    assert models.get("Utilities/1d") is None
    assert models.get("Utilities/1d") is None and loader.loads == ["v1"]


def test_a_promotion_loads_beside_the_old_version_then_swaps(loader: Loader) -> None:
    registry = FakeRegistry({"Energy/1d": "v1"})
    swaps: list[Swap] = []
    models = LiveModels(registry, on_swap=swaps.append)
    old, _ = models.get("Energy/1d") or (None, None)
    generation = models.generation
    registry.pointers["Energy/1d"] = "v2"
    loader.hold = "v2"
    refresher = threading.Thread(target=models.refresh)
    refresher.start()
    assert loader.entered.wait(10)
    # While v2 loads, requests are answered at once by v1.
    t0 = time.perf_counter()
    during = models.get("Energy/1d")
    assert during is not None and during[1] == "v1" and during[0] is old
    assert time.perf_counter() - t0 < 0.5 and models.generation == generation
    loader.release.set()
    refresher.join(10)
    after = models.get("Energy/1d")
    assert after is not None and after[1] == "v2" and after[0] is not old
    assert swaps == [Swap("Energy/1d", "v1", "v2")] and models.generation == generation + 1
    assert models.refresh() == []  # nothing changed since


def test_withdrawal_failure_and_reappearance(loader: Loader) -> None:
    registry = FakeRegistry({"Energy/1d": "v1", "Energy/2d": "w1"})
    models = LiveModels(registry)
    models.get("Energy/1d")
    models.get("Energy/2d")
    del registry.pointers["Energy/2d"]
    assert models.refresh() == [Swap("Energy/2d", "w1", None)]
    assert models.get("Energy/2d") is None and models.version("Energy/2d") is None

    registry.pointers["Energy/1d"] = "v2"
    registry.fail_reads = True
    assert models.refresh() == []  # the registry is down: the old version keeps serving
    assert (models.get("Energy/1d") or (None, None))[1] == "v1"

    registry.fail_reads = False
    registry.pointers["Energy/2d"] = "w2"
    swaps = models.refresh()
    assert Swap("Energy/2d", None, "w2") in swaps and Swap("Energy/1d", "v1", "v2") in swaps
    assert (models.get("Energy/2d") or (None, None))[1] == "w2"  # loaded on first use
    assert loader.loads == ["v1", "w1", "v2", "w2"]


def test_least_recently_used_is_evicted(loader: Loader) -> None:
    registry = FakeRegistry({f"S{i}/1d": "v1" for i in range(4)})
    models = LiveModels(registry, maxsize=2)
    for key in ("S0/1d", "S1/1d", "S0/1d", "S2/1d"):
        models.get(key)
    assert set(models.loaded()) == {"S0/1d", "S2/1d"}
    assert len(loader.loads) == 3


def test_memo_serves_only_within_a_generation() -> None:
    memo = Memo(size=2)
    value: Any = object()
    assert memo.get("a", (0, 0)) is None
    memo.put("a", value, (0, 0))
    assert memo.get("a", (0, 0)) is value
    memo.put("b", value, (0, 0))
    memo.put("c", value, (0, 0))
    assert len(memo) == 2 and memo.get("a", (0, 0)) is None  # LRU bound
    assert memo.get("b", (1, 0)) is None and len(memo) == 0  # a swap empties it
    memo.put("stale", value, (0, 0))  # computed before the swap: never kept
    assert memo.get("stale", (1, 0)) is None
    off = Memo(size=0)
    off.put("a", value, (0, 0))
    assert off.get("a", (0, 0)) is None
