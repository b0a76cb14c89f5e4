"""``turbomode models …`` and ``evaluate`` as a person reads them: every version of a key,
identifiers never cut, the gate's refusal respected unless forced, errors that name the
command to run, and the honest table one row per (sector, horizon)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from turbomode.cli.main import app
from turbomode.models.registry import ModelRegistry

KEY = "Communication Services/1d"
REJECTED = {"decision": "reject", "deciding_rule": "beats_baselines", "look": {}}
ACCEPTED = {"decision": "promote", "deciding_rule": "all rules passed", "look": {}}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    uri = str(tmp_path / "models")
    monkeypatch.setenv("TURBOMODE_STORES__MODEL_REGISTRY_URI", uri)
    monkeypatch.delenv("TURBOMODE_CONFIG", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    return ModelRegistry(uri)


def register(registry: ModelRegistry, tag: str, gate: dict[str, object], ic: float) -> str:
    manifest = {"run_id": tag, "gate": gate, "metrics": {"ensemble": {"rank_ic": {"mean_ic": ic}}}}
    return registry.register(KEY, {"model.txt": tag.encode()}, manifest)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_versions_lists_every_version_with_its_gate_and_full_ids(registry: ModelRegistry) -> None:
    good = register(registry, "a", ACCEPTED, 0.031)
    bad = register(registry, "b", REJECTED, 0.004)
    registry.promote(KEY, good)
    code, out = invoke("models", "versions", KEY)
    assert code == 0, out
    assert good in out and bad in out  # whole ids, even when piped
    assert "beats_baselines" in out and "0.031" in out
    code, out = invoke("models", "versions", KEY, "--json")
    rows = json.loads(out)
    assert [(r["version"], r["production"], r["gate"]) for r in rows] == [
        (good, True, "promote"),
        (bad, False, "reject"),
    ]
    code, out = invoke("models", "list")
    assert code == 0 and f"{good} " in out and KEY in out
    code, out = invoke("models", "list", "--json")
    assert json.loads(out) == [{"key": KEY, "production": good, "versions": 2, "latest": bad}]


def test_promote_refuses_what_the_gate_rejected_unless_forced(registry: ModelRegistry) -> None:
    good = register(registry, "a", ACCEPTED, 0.031)
    bad = register(registry, "b", REJECTED, 0.004)
    registry.promote(KEY, good)
    code, out = invoke("models", "promote", KEY, bad)
    assert code == 2 and "the gate rejected" in out and "--force" in out, out
    assert "Traceback" not in out
    assert registry.production(KEY) == good
    code, out = invoke("models", "promote", KEY, bad, "--force")
    assert code == 0 and "forced" in out, out
    assert registry.production(KEY) == bad


def test_errors_name_the_command_to_run(registry: ModelRegistry) -> None:
    register(registry, "a", ACCEPTED, 0.031)
    code, out = invoke("models", "promote", KEY, "20990101T000000000000Z-nope")
    assert code == 2 and f"turbomode models versions '{KEY}'" in out, out
    assert "list_versions" not in out
    code, out = invoke("models", "versions", "Energy/1d")
    assert code == 2 and "turbomode models list" in out, out


def test_evaluate_prints_one_row_per_task_beside_the_baselines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TURBOMODE_CONFIG", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    rows = []
    for sector, ic in ((KEY.split("/")[0], 0.05), ("Energy", 0.01)):
        for model, value in (("ensemble", ic), ("majority", 0.0), ("momentum", -0.02)):
            rows.append(
                {
                    "sector": sector,
                    "horizon": 1,
                    "model": model,
                    "rank_ic": value,
                    "ic_t": 2.5 if model == "ensemble" else None,
                    "balanced_accuracy": 0.4 if model == "ensemble" else 1 / 3,
                    "log_loss": 1.0,
                }
            )
    report = {
        "run_id": "r1",
        "evaluation": rows,
        "gates": {f"{KEY.split('/')[0]}/1d": ACCEPTED, "Energy/1d": REJECTED},
        "versions": {},
    }
    reports = tmp_path / "data" / "reports"
    reports.mkdir(parents=True)
    (reports / "train_latest.json").write_text(json.dumps(report))
    code, out = invoke("--data-dir", str(tmp_path / "data"), "evaluate")
    assert code == 0, out
    lines = out.splitlines()
    body = [ln for ln in lines if ln.startswith("│")]
    assert len(body) == 2  # one row per (sector, horizon), not one per model × key
    assert body[0].split("│")[1].strip() == "Communication Services"  # never "Com… Ser…"
    assert "0.050" in body[0] and "-0.020" in body[0] and "promote" in body[0]
    assert "reject" in body[1]
    header_lines = [ln.split("┃")[1:-1] for ln in lines if ln.startswith("┃")]
    columns = [
        " ".join(p.strip() for p in parts).strip() for parts in zip(*header_lines, strict=True)
    ]
    # Named columns in reading order: the model's figure first, then each baseline's.
    assert columns == [
        "sector",
        "horizon",
        "rank IC",
        "IC t",
        "rank IC majority",
        "rank IC momentum",
        "balanced accuracy",
        "bal. acc. majority",
        "bal. acc. momentum",
        "gate",
    ]
