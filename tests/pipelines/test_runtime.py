"""What every component does the same way: settings, JSON artifacts, metrics, and the check
that consecutive steps read the same stores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from turbomode.pipelines import runtime as rt


@dataclass
class Artifact:
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Metrics:
    logged: dict[str, float] = field(default_factory=dict)

    def log_metric(self, metric: str, value: float) -> None:
        self.logged[metric] = value


@dataclass
class JobResult:
    as_of: date
    registered: int
    resolved: pd.DataFrame
    run_id: int
    status: str
    pending: dict[int, str] = field(default_factory=dict)
    hit_rate: float = float("nan")


def test_settings_from_a_file_and_the_ray_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("TURBOMODE_COMPUTE__RAY_ADDRESS", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  data_dir: /somewhere\n")
    s = rt.settings(str(config))
    assert s.data.data_dir == Path("/somewhere") and s.compute.ray_address is None
    monkeypatch.setenv("RAY_ADDRESS", "ray://from-env:10001")
    assert rt.settings("").compute.ray_address == "ray://from-env:10001"
    assert rt.settings("", "ray://given:10001").compute.ray_address == "ray://given:10001"
    with pytest.raises(FileNotFoundError):
        rt.settings(str(tmp_path / "missing.yaml"))


def test_settings_expand_password_references_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's pipeline settings file names its passwords (``${POSTGRES_PASSWORD}``); a
    step expands them from the variables its Secrets give it, and nothing else changes."""
    monkeypatch.delenv("TURBOMODE_STORES__SIGNALS_URL", raising=False)
    monkeypatch.delenv("TURBOMODE_STORES__REDIS_URL", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        "stores:\n"
        "  signals_url: postgresql+psycopg://tm:${POSTGRES_PASSWORD}@db:5432/tm\n"
        "  redis_url: rediss://:${REDIS_PASSWORD}@cache:6379/0\n"
        "  model_registry_uri: s3://bucket/$HOME/${NOT_A_REF\n"
    )
    monkeypatch.setenv("POSTGRES_PASSWORD", "pg-s3cr3t")
    monkeypatch.setenv("REDIS_PASSWORD", "")
    s = rt.settings(str(config))
    assert s.stores.signals_url == "postgresql+psycopg://tm:pg-s3cr3t@db:5432/tm"
    assert s.stores.redis_url == "rediss://:@cache:6379/0"
    assert s.stores.model_registry_uri == "s3://bucket/$HOME/${NOT_A_REF"  # not a reference

    monkeypatch.delenv("REDIS_PASSWORD")
    with pytest.raises(rt.UnsetReferenceError, match=r"stores\.redis_url .*\$\{REDIS_PASSWORD\}"):
        rt.settings(str(config))
    # The message names the variable, never another one's value.
    try:
        rt.settings(str(config))
    except rt.UnsetReferenceError as exc:
        assert "pg-s3cr3t" not in str(exc)


def test_expand_references_takes_any_mapping() -> None:
    s = rt.settings("")
    s.stores.signals_url = "postgresql+psycopg://u:${A}${B}@h/db"
    s.data.source = "${SOURCE}"
    rt.expand_references(s, {"A": "x", "B": "y", "SOURCE": "synthetic"})
    assert s.stores.signals_url == "postgresql+psycopg://u:xy@h/db"
    assert s.data.source == "synthetic"


def test_an_empty_ray_address_variable_overrides_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU training step runs with TURBOMODE_COMPUTE__RAY_ADDRESS="" so it starts Ray in
    its own pod even though the chart's settings file names the RayCluster."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("compute:\n  ray_address: ray://turbomode-ray-head-svc.tm.svc:10001\n")
    monkeypatch.delenv("TURBOMODE_COMPUTE__RAY_ADDRESS", raising=False)
    assert rt.settings(str(config)).compute.ray_address.startswith("ray://turbomode-ray-head")
    monkeypatch.setenv("TURBOMODE_COMPUTE__RAY_ADDRESS", "")
    assert rt.settings(str(config)).compute.ray_address is None


def test_split_list() -> None:
    assert rt.split_list("") is None
    assert rt.split_list(" Energy , Utilities,") == ["Energy", "Utilities"]


def test_a_step_refuses_another_steps_store(tmp_path: Path) -> None:
    here = rt.settings("")
    here.data.data_dir = tmp_path / "a"
    art = Artifact(str(tmp_path / "x"), dict(rt.store_location(here)))
    rt.expect_same_store(art, here)  # same store: fine
    rt.expect_same_store(Artifact(str(tmp_path / "y")), here)  # nothing recorded: fine
    there = rt.settings("")
    there.data.data_dir = tmp_path / "b"
    with pytest.raises(rt.StoreMismatchError, match="data_dir"):
        rt.expect_same_store(art, there)


def test_a_result_becomes_json_and_its_figures_metrics(tmp_path: Path) -> None:
    result = JobResult(
        as_of=date(2024, 5, 3),
        registered=4,
        resolved=pd.DataFrame({"symbol": ["A", "B"], "ret": [np.float32(0.5), np.nan]}),
        run_id=17,
        status="kept",
        pending={3: "waiting: 2 bars"},
    )
    art, metrics = Artifact(str(tmp_path / "out" / "result")), Metrics()
    logged = rt.publish_result(result, art, metrics)
    assert logged == metrics.logged == {"registered": 4.0, "n_resolved": 2.0, "n_pending": 1.0}
    doc = json.loads(Path(art.path).read_text())
    assert doc["as_of"] == "2024-05-03" and doc["status"] == "kept" and doc["run_id"] == 17
    assert doc["resolved"] == [{"symbol": "A", "ret": 0.5}, {"symbol": "B", "ret": None}]
    assert doc["pending"] == {"3": "waiting: 2 bars"}
    with pytest.raises(TypeError, match="dataclass or mapping"):
        rt.publish_result([1, 2], art, metrics)


def test_evaluation_figures_put_each_model_beside_the_baselines() -> None:
    def row(sector: str, model: str, ic: float | None, bacc: float | None) -> dict[str, Any]:
        return {
            "sector": sector,
            "horizon": 1,
            "model": model,
            "rank_ic": ic,
            "balanced_accuracy": bacc,
        }

    report = {
        "evaluation": [
            row("Energy", "ensemble", 0.04, 0.40),
            row("Energy", "momentum", -0.01, 0.33),
            row("Utilities", "ensemble", 0.02, None),
            row("Utilities", "momentum", 0.01, 0.35),
            {"sector": "Materials", "horizon": 1, "model": "FAILED", "error": "no rows"},
        ],
        "gates": {"Energy/1d": {"decision": "promote"}, "Utilities/1d": {"decision": "reject"}},
    }
    figures = rt.evaluation_figures(report)
    assert figures["tasks"] == 3 and figures["trained"] == 2 and figures["failed"] == 1
    assert figures["gate_promote"] == 1 and figures["gate_reject"] == 1
    assert figures["ensemble_mean_rank_ic"] == pytest.approx(0.03)
    assert figures["ensemble_mean_balanced_accuracy"] == pytest.approx(0.40)
    assert figures["momentum_mean_rank_ic"] == pytest.approx(0.0)
    assert figures["momentum_mean_balanced_accuracy"] == pytest.approx(0.34)
