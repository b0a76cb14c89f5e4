"""A week in the life of a deployed TurboMode, on the synthetic market.

Five consecutive trading days arrive one at a time (each night the day's bars are appended to
a parquet source), and every job the rendered chart schedules runs — the commands taken from
its CronWorkflows (their container args, step by step, in schedule order) — locally against
one data directory, from another working directory. The scan date advances every night,
signals and the book change, outcomes resolve; on a sixth night no data arrives: the scan
refuses to re-scan, and the alert rules, fed what the jobs pushed at the simulated times, raise
TurboModeScanNoNewData in promtool.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, TINY
from tests.deploy.conftest import (
    helm_template,
    load_manifests,
    of_kind,
    require_tool,
    run,
)
from turbomode.cli.main import NO_NEW_BAR_EXIT, app
from turbomode.config import Settings
from turbomode.data.sources.synthetic import generate_market
from turbomode.feature_store import model_features
from turbomode.features.engine import build_features
from turbomode.job_metrics import JobMetrics
from turbomode.labels import make_labels
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.registry import ModelRegistry
from turbomode.store import SignalStore
from turbomode.workspace import Workspace, with_data_dir

pytestmark = pytest.mark.slow

CONFIG = {
    "synthetic": {"n_symbols": 22, "n_days": 330},
    "signals": {"threshold_mode": "quantile", "threshold_quantile": 0.8, "threshold_floor": 0.05},
    "outcomes": {"min_new_samples": 1},
}


# --------------------------------------------------------------------------- cron


def _matches(spec: str, value: int) -> bool:
    for part in spec.split(","):
        if part == "*":
            return True
        if "-" in part:
            lo, hi = map(int, part.split("-"))
            if lo <= value <= hi:
                return True
        elif int(part) == value:
            return True
    return False


def fires(expr: str, t: datetime) -> bool:
    """Whether a 5-field cron expression (numbers, lists, ranges, *) fires at local time t."""
    minute, hour, dom, month, dow = expr.split()
    return (
        _matches(minute, t.minute)
        and _matches(hour, t.hour)
        and _matches(dom, t.day)
        and _matches(month, t.month)
        and _matches(dow, t.isoweekday() % 7)
    )


@dataclass
class CronJob:
    job: str
    schedule: str
    timezone: str
    steps: list[list[str]]


def chart_jobs(helm: str) -> list[CronJob]:
    """Every CronWorkflow of the default rendering: schedule and its steps' container args."""
    rendered = helm_template(helm)
    assert rendered.returncode == 0, rendered.stderr
    jobs = []
    for cron in of_kind(load_manifests(rendered.stdout), "CronWorkflow"):
        spec = cron["spec"]
        wf = spec["workflowSpec"]
        by_name = {t["name"]: t for t in wf["templates"]}
        entry = by_name[wf["entrypoint"]]
        steps = []
        for group in entry["steps"]:
            (step,) = group
            container = by_name[step["template"]]["container"]
            assert container["command"] == ["turbomode"]
            steps.append(list(container["args"]))
        (schedule,) = spec["schedules"]
        jobs.append(
            CronJob(
                cron["metadata"]["labels"]["turbomode.io/job"], schedule, spec["timezone"], steps
            )
        )
    return jobs


# --------------------------------------------------------------------------- the week


@dataclass
class Pushes:
    """What each job pushed, at the simulated time it ran (the Pushgateway's view)."""

    now: float = 0.0
    rows: list[tuple[float, str, dict[str, float]]] = field(default_factory=list)

    def record(self, metrics: JobMetrics, _gateway: str | None) -> bool:
        values: dict[str, float] = {}
        for family in metrics.registry.collect():
            for sample in family.samples:
                if not sample.labels:
                    values[sample.name] = float(sample.value)
        if "turbomode_job_last_success_timestamp_seconds" in values:
            values["turbomode_job_last_success_timestamp_seconds"] = self.now
        self.rows.append((self.now, metrics.job, values))
        return True


def week_window(days: pd.DatetimeIndex) -> list[date]:
    """Six weeknights: Monday..Friday whose bars arrive, and the next Monday whose does not;
    no 1st of a month inside (monthly jobs stay out of the week)."""
    trading = {d.date() for d in days}
    for monday in sorted(d.date() for d in days if d.weekday() == 0)[::-1]:
        week = [monday + timedelta(days=i) for i in range(5)] + [monday + timedelta(days=7)]
        clean = all(d in trading for d in week) and not any(
            (monday + timedelta(days=i)).day == 1 for i in range(9)
        )
        if clean and monday - timedelta(days=200) > days[0].date():
            return week
    raise AssertionError("no clean week in the synthetic calendar")


def write_source(md: Any, until: date, src: Path) -> None:
    src.mkdir(parents=True, exist_ok=True)
    cut = pd.Timestamp(until)
    md.prices[md.prices["date"] <= cut].to_parquet(src / "prices.parquet", index=False)
    md.market[md.market["date"] <= cut].to_parquet(src / "market.parquet", index=False)


def train_tiny_models(settings: Settings) -> None:
    """Tiny production ensembles for every sector × horizon, in the workspace's registry."""
    from turbomode.data.ingest import load_clean

    md = load_clean(settings)
    sectors = md.universe.sector_map()
    feats = build_features(md.prices, md.market, sectors).frame
    labels = make_labels(md.prices, settings.labels, sectors=sectors)
    cols = model_features(settings)
    data = feats.merge(labels, on=["symbol", "date"])
    data = data[data["date"] >= data["date"].max() - pd.Timedelta(days=150)]
    registry = ModelRegistry(Workspace.of(settings).model_registry_uri, family="turbomode")
    root = Path(settings.data.data_dir) / "artifacts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for h in settings.labels.horizons:
            rows = data[data[f"label_{h}"].notna()]
            ens = StackedEnsemble(cols, h, TINY).fit(
                rows[cols], rows[f"label_{h}"].to_numpy(dtype=np.int64), rows["date"].to_numpy()
            )
            ens.save(root / f"{h}d")
            files = {p.name: p for p in (root / f"{h}d").iterdir() if p.is_file()}
            for sector in sorted(set(sectors.values())):
                key = f"{sector}/{h}d"
                registry.promote(key, registry.register(key, files, {"source": "week"}))


def test_a_week_in_the_life(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helm = require_tool("helm")
    promtool = require_tool("promtool")
    jobs = chart_jobs(helm)
    assert {j.job for j in jobs} >= {"nightly_scan", "outcomes", "training_samples"}
    zone = ZoneInfo(jobs[0].timezone)

    data, src, elsewhere = tmp_path / "data", tmp_path / "source", tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = tmp_path / "turbomode.yaml"
    config.write_text(
        yaml.safe_dump({**CONFIG, "data": {"source": "parquet", "source_path": str(src)}})
    )
    for name in list(os.environ):
        if name.startswith("TURBOMODE_") and "__" in name:
            monkeypatch.delenv(name)
    monkeypatch.setenv("TURBOMODE_CONFIG", str(config))
    monkeypatch.chdir(elsewhere)  # every command runs away from the data directory

    settings = with_data_dir(Settings(**CONFIG), data)
    md = generate_market(settings.synthetic, settings.universe)
    days = pd.DatetimeIndex(sorted(md.prices["date"].unique()))
    nights = week_window(days)
    arriving = nights[:5]
    md.universe.save(src)
    write_source(md, arriving[0] - timedelta(days=1), src)

    runner = CliRunner()

    def turbomode(args: list[str]) -> Any:
        return runner.invoke(app, ["--data-dir", str(data), *args], catch_exceptions=False)

    for args in (["ingest"], ["features", "build"], ["features", "materialize"]):
        res = turbomode(args)
        assert res.exit_code == 0, (args, res.output)
    train_tiny_models(with_data_dir(Settings(**CONFIG), data))

    pushes = Pushes()
    monkeypatch.setattr(JobMetrics, "push", lambda self, gateway: pushes.record(self, gateway))
    start = datetime.combine(nights[0], datetime.min.time(), zone) + timedelta(hours=23)
    end = datetime.combine(nights[-1], datetime.min.time(), zone) + timedelta(hours=23, minutes=1)
    ran: list[tuple[datetime, str, int]] = []
    scans: dict[date, dict[str, Any]] = {}
    t = start
    while t < end:
        for job in sorted(jobs, key=lambda j: j.job):
            if not fires(job.schedule, t):
                continue
            if job.job == "nightly_scan" and t.date() in arriving:
                write_source(md, t.date(), src)  # the day's bars arrive after the close
            pushes.now = t.timestamp()
            for args in job.steps:
                res = turbomode(args)
                ran.append((t, " ".join(args), res.exit_code))
                if res.exit_code != 0:
                    break
            latest = Workspace.of(with_data_dir(Settings(**CONFIG), data)).latest_scan
            if job.job == "nightly_scan" and res.exit_code == 0:
                scans[t.date()] = json.loads(latest.read_text())
        t += timedelta(hours=1)

    # ---- every job ran in schedule order; the night without data did not re-scan
    nightly = [r for r in ran if r[1] == "scan"]
    assert [r[0].date() for r in nightly] == nights
    assert [r[2] for r in nightly] == [0] * 5 + [NO_NEW_BAR_EXIT], ran
    assert any(r[1] == "outcomes track" for r in ran)
    assert any(r[1] == "outcomes samples" for r in ran)
    assert {r[1] for r in ran} >= {"report daily --send", "report weekly --send"}
    assert all(code == 0 for _, cmd, code in ran if cmd != "scan"), ran
    assert not (elsewhere / "data").exists()  # nothing under the working directory

    # ---- the scan date advanced every night; signals and the book changed
    assert [date.fromisoformat(s["scan_date"]) for s in scans.values()] == arriving
    assert all(s["n_scored"] > 0 and s["stale_features"] == 0 for s in scans.values())
    signal_sets = [
        frozenset((x["symbol"], x["horizon"], x["signal_date"]) for x in s["signals"])
        for s in scans.values()
    ]
    assert len(set(signal_sets)) > 1
    books = [json.dumps(s["positions"], sort_keys=True) for s in scans.values()]
    assert len(set(books)) > 1
    store = SignalStore(Workspace.of(with_data_dir(Settings(**CONFIG), data)).signals_url)
    try:
        assert len(store.runs()) == 5
        resolved = store.outcomes()
        resolved = resolved[resolved["status"] != "pending"]
        assert len(resolved) > 0
    finally:
        store.dispose()

    # ---- the alerts, fed what the jobs pushed at the simulated times
    origin = start.timestamp() - 3600
    step = 300
    n = int((end.timestamp() + 2 * 3600 - origin) // step)
    series: dict[str, list[str]] = {}

    def held(job: str, name: str, shift: float = 0.0) -> list[str]:
        points = sorted((ts, v[name]) for ts, j, v in pushes.rows if j == job and name in v)
        out, k, value = [], 0, None
        for i in range(n):
            now = origin + i * step
            while k < len(points) and points[k][0] <= now:
                value = points[k][1]
                k += 1
            out.append("_" if value is None else repr(value - shift))
        return out

    series['turbomode_scan_new_bar{job="turbomode_scan"}'] = held("scan", "turbomode_scan_new_bar")
    series['turbomode_job_success{job="turbomode_scan"}'] = held("scan", "turbomode_job_success")
    series['turbomode_job_last_success_timestamp_seconds{job="turbomode_scan"}'] = held(
        "scan", "turbomode_job_last_success_timestamp_seconds", origin
    )
    series['turbomode_features_latest_timestamp_seconds{job="turbomode_materialize"}'] = held(
        "materialize", "turbomode_features_latest_timestamp_seconds", origin
    )

    def at(t: datetime, minutes: int) -> str:
        return f"{int((t.timestamp() - origin) // 60) + minutes}m"

    night_times = [r[0] for r in nightly]
    checks = [
        {"eval_time": at(t, 20), "alertname": "TurboModeScanNoNewData", "exp_alerts": []}
        for t in night_times[:5]
    ]
    checks += [
        {"eval_time": at(t, 20), "alertname": alert, "exp_alerts": []}
        for t in night_times
        for alert in ("TurboModeFeaturesStale", "TurboModeNightlyScanStale")
    ]
    checks.append(
        {
            "eval_time": at(night_times[-1], 20),
            "alertname": "TurboModeScanNoNewData",
            "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
        }
    )
    rules = tmp_path / "rules.yml"
    plain = yaml.safe_load((REPO / "monitoring" / "prometheus" / "turbomode-rules.yml").read_text())
    for group in plain["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # promtool compares annotations too: labels suffice
    rules.write_text(yaml.safe_dump(plain))
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": f"{step // 60}m",
                "input_series": [
                    {"series": name, "values": " ".join(values)} for name, values in series.items()
                ],
                "alert_rule_test": checks,
            }
        ],
    }
    test_file = tmp_path / "week_test.yml"
    test_file.write_text(yaml.safe_dump(test, sort_keys=False))
    result = run([promtool, "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr
