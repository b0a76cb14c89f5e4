"""Scale simulation: the nightly chain on the synthetic market at growing universe sizes.

For each size (``synthetic.n_symbols``; ``--days`` trading days, 1512 ≈ 6 years) a fresh data
directory goes through the platform's own code paths, each stage in a child process of its own
(so a stage's memory is its own; the interpreter and imports are included):

* **ingest** — ``data.ingest.ingest`` from the synthetic source: generate, validate, write the
  clean store;
* **features** — ``feature_store.build(full=True)``: compute every registry feature, write the
  offline tables, apply the Feast definitions; once with ``features.engine=local`` (one
  process) and once with ``features.engine=ray`` on a local Ray of this machine's cores
  (``ray.init`` timed apart as ``ray start``; its blocks write the offline tables themselves, so
  no process holds the whole frame); ``compute`` is the feature computation alone;
* **training set** — ``models.train.training_set``: labels joined point in time through Feast,
  once with the DuckDB offline store (one process) and once with the production profile's Ray
  offline store (``turbomode.feast_ray``) on a local Ray of this machine's cores;
* **train 1 key** — ``train_one`` for Information Technology at the first horizon, small
  ensembles (five trees per learner), two threads; stand-ins for the other keys are trained
  and promoted after the timing, so the scan has models;
* **materialize** — ``feature_store.materialize`` into the online store;
* **scan** — ``run_scan``: the nightly scan, explanations included.

Peak memory: ``ru_maxrss`` of the stage's process, except for the Ray build, whose tasks run in
worker processes: there it is the peak of the summed PSS of the process and every descendant
(Ray's GCS, raylet and workers — all of this one node), sampled every 0.2 s.

Growth: each stage's time and memory are fitted as ``a + b · N`` (fixed cost plus a cost per
symbol, least squares over the measured sizes; the log-log slope is printed beside) and
extrapolated to the sizes this machine cannot hold (``--extrapolate``),
marked so. The sizing table gives, per universe, the nightly chain (ingest, features,
materialize, scan) on one process and how many nodes of ``--node-cores`` / ``--node-gib`` the
Ray feature build needs for the chain to end within ``--deadline-s``.

Usage: python benchmarks/bench_scale.py [SIZES ...] [--days 1512] [--work DIR]
       [--extrapolate 5000 20000] [--node-cores 16] [--node-gib 64] [--deadline-s 3600]
       [--results WORK/results.json]   (re-print a saved run)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tree_memory import TreeMemory

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "features", "training set", "train 1 key", "materialize", "scan")
NIGHTLY = ("ingest", "features", "materialize", "scan")
TINY = {
    "lightgbm": {"n_estimators": 5, "num_leaves": 7, "min_child_samples": 20},
    "catboost": {"iterations": 5, "depth": 3},
    "xgb_hist": {"n_estimators": 5, "max_depth": 3},
    "xgb_linear": {"n_estimators": 5},
    "random_forest": {"n_estimators": 5, "max_depth": 4},
    "meta": {"n_estimators": 5, "num_leaves": 7, "min_child_samples": 20},
}
TRAIN_SECTOR = "Information Technology"


# ---------------------------------------------------------------- child: one stage, measured


def settings_for(work: Path, engine: str = "local") -> Any:
    from turbomode.config import Settings
    from turbomode.workspace import with_data_dir

    spec = json.loads((work / "settings.json").read_text())
    settings = with_data_dir(Settings(**spec), work / "data")
    settings.features.engine = engine  # type: ignore[assignment]
    return settings


def run_stage(stage: str, work: Path, engine: str) -> dict[str, Any]:
    """Run one stage, return seconds and what it did (the peak is added by the caller)."""
    info: dict[str, Any] = {}
    settings = settings_for(work, engine)
    if stage == "ingest":
        from turbomode.data.ingest import ingest

        t = time.perf_counter()
        report = ingest(settings)
        seconds = time.perf_counter() - t
        info["rows"] = int(report.prices.rows_out)
    elif stage == "features":
        from turbomode import feature_store as fs

        if engine == "ray":
            import ray

            t = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            info["ray_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        report, _store = fs.build(settings, full=True)
        seconds = time.perf_counter() - t
        info["compute_s"] = report.elapsed_s
        info["rows"] = report.n_rows
    elif stage == "training set":
        from turbomode import feature_store as fs
        from turbomode.models.train import training_set

        # Feast's offline store: DuckDB in this process, or the Ray offline store
        # (turbomode.feast_ray) on a local Ray of this machine's cores; the definitions name
        # the tables the way that store reads them (untimed, as a build would have applied).
        settings.features.offline_store = "ray" if engine == "ray" else "duckdb"
        fs.apply(settings)
        if engine == "ray":
            import ray

            t = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            info["ray_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        data = training_set(settings)
        seconds = time.perf_counter() - t
        data.to_parquet(work / "training_set.parquet", index=False)  # for the train stage
        info["rows"] = len(data)
    elif stage == "train 1 key":
        seconds, info = train_key(settings, work)
    elif stage == "materialize":
        from turbomode import feature_store as fs

        t = time.perf_counter()
        fs.materialize(fs.open_store(settings), settings)
        seconds = time.perf_counter() - t
    elif stage == "scan":
        from turbomode.signals.scan import run_scan

        t = time.perf_counter()
        result = run_scan(settings)
        seconds = time.perf_counter() - t
        info["signals"] = len(result.fresh)
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return {"seconds": seconds, "info": info}


def train_key(settings: Any, work: Path) -> tuple[float, dict[str, Any]]:
    """Time one key; then train the first horizon's stand-in for every other horizon (on the
    same sector, untimed) and promote them under every sector's keys for the scan."""
    import pandas as pd

    from turbomode.config import GICS_SECTORS, ModelSettings
    from turbomode.feature_store import model_features
    from turbomode.models.registry import ModelRegistry
    from turbomode.models.train import TrainTask, oot_window_start, train_one
    from turbomode.workspace import Workspace

    settings.models = ModelSettings.model_validate(TINY)
    data = pd.read_parquet(work / "training_set.parquet")
    features = model_features(settings)
    test_start = str(oot_window_start(data["date"], settings).date())
    rows = data[data["sector"] == TRAIN_SECTOR].reset_index(drop=True)
    out = work / "models"
    horizons = list(settings.labels.horizons)
    seconds = 0.0
    results = {}
    for i, h in enumerate(horizons):
        t = time.perf_counter()
        results[h] = train_one(
            TrainTask(TRAIN_SECTOR, h), rows, features, settings, str(out), test_start, threads=2
        )
        if i == 0:
            seconds = time.perf_counter() - t
    registry = ModelRegistry(Workspace.of(settings).model_registry_uri, family="turbomode")
    for h, r in results.items():
        assert r.model_dir is not None
        files = {p.name: p for p in Path(r.model_dir).iterdir() if p.is_file()}
        for sector in GICS_SECTORS:
            key = f"{sector}/{h}d"
            registry.promote(key, registry.register(key, files, {"source": "bench_scale"}))
    return seconds, {"rows": len(rows), "key": f"{TRAIN_SECTOR}/{horizons[0]}d"}


def child(stage: str, work: Path, engine: str) -> None:
    import resource

    warnings.filterwarnings("ignore")
    tree = TreeMemory(0.2, pss=True).start() if engine == "ray" else None
    out = run_stage(stage, work, engine)
    if tree is not None:
        out["peak_gib"] = tree.stop() / 2**30
        import ray

        ray.shutdown()
    else:
        out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(out, default=float), flush=True)


# ---------------------------------------------------------------- parent: sizes, table, fit


def measure(stage: str, work: Path, engine: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        stage,
        "--work",
        str(work),
        "--engine",
        engine,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(f"stage {stage} ({engine}) failed ({proc.returncode}):\n{tail}")
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


def run_size(n: int, days: int, root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    work = root / f"n{n}"
    work.mkdir(parents=True, exist_ok=True)
    spec = {"synthetic": {"n_symbols": n, "n_days": days}}
    (work / "settings.json").write_text(json.dumps(spec))
    got: dict[tuple[str, str], dict[str, Any]] = {}
    plan = [("ingest", "local"), ("features", "ray"), ("features", "local")]
    plan += [("training set", "ray")] + [(s, "local") for s in STAGES[2:]]
    for stage, engine in plan:
        r = measure(stage, work, engine)
        got[(stage, engine)] = r
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in r["info"].items())
        print(
            f"  {n:6d} {stage:13s} {engine:5s} {r['seconds']:8.1f} s {r['peak_gib']:6.2f} GiB"
            f"  {extra}",
            flush=True,
        )
    return got


def _fmt(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


def fit(sizes: list[int], ys: list[float]) -> tuple[float, float]:
    """``y = a + b · N`` by least squares: a stage's fixed cost (start-up, imports, the market
    series) and its cost per symbol. A power law fitted to two small sizes reads the fixed
    cost as sub-linear growth and would promise too little at 20,000; with one size, all of
    it is taken as per-symbol (proportional growth)."""
    if len(sizes) < 2:
        return 0.0, ys[0] / sizes[0]
    mx, my = sum(sizes) / len(sizes), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in sizes)
    b = sum((x - mx) * (y - my) for x, y in zip(sizes, ys, strict=True)) / den
    b = max(b, 0.0)  # noise can make a flat stage look shrinking
    return my - b * mx, b


def slope(sizes: list[int], ys: list[float]) -> float:
    """Log-log growth exponent between the smallest and largest size (1: proportional)."""
    lo, hi = sizes[0], sizes[-1]
    return math.log(ys[-1] / ys[0]) / math.log(hi / lo) if hi > lo else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[500, 2000])
    ap.add_argument("--days", type=int, default=1512)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--extrapolate", nargs="*", type=int, default=[5000, 20000])
    ap.add_argument("--node-cores", type=int, default=16)
    ap.add_argument("--node-gib", type=float, default=64.0)
    ap.add_argument("--deadline-s", type=float, default=3600.0)
    ap.add_argument("--results", type=Path, default=None, help="re-print a saved results.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.work, args.engine)
        return 0
    root = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    cores = os.cpu_count() or 1
    if not args.results:
        print(f"scale simulation: sizes {args.sizes}, {args.days} days, {cores} cores, {root}")
    measured: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
    if args.results:  # re-print a saved run (another fit or node size), nothing measured
        saved = json.loads(args.results.read_text())
        cores = saved["cores"]
        for n, rows in saved["sizes"].items():
            measured[int(n)] = {(r["stage"], r["engine"]): r for r in rows}
    else:
        for n in sorted(args.sizes):
            measured[n] = run_size(n, args.days, root)
        saved = {
            "cores": cores,
            "days": args.days,
            "sizes": {
                n: [{"stage": k[0], "engine": k[1], **v} for k, v in m.items()]
                for n, m in measured.items()
            },
        }
        (root / "results.json").write_text(json.dumps(saved, indent=1, default=float))
    report(measured, args, cores)
    return 0


def report(
    measured: dict[int, dict[tuple[str, str], dict[str, Any]]], args: Any, cores: int
) -> None:
    sizes = sorted(measured)
    keys = list(measured[sizes[0]])
    fits = {
        k: (
            fit(sizes, [measured[n][k]["seconds"] for n in sizes]),
            fit(sizes, [measured[n][k]["peak_gib"] for n in sizes]),
        )
        for k in keys
    }
    targets = sorted(set(sizes) | {n for n in args.extrapolate if n > max(sizes)})

    def value(n: int, k: tuple[str, str], what: str) -> float:
        if n in measured:
            return float(measured[n][k][what])
        (a_t, b_t), (a_m, b_m) = fits[k]
        return a_t + b_t * n if what == "seconds" else a_m + b_m * n

    print(f"\nper stage, seconds / peak GiB ({cores} cores; * = extrapolated from the fit)")
    head = "".join(f"{n:>16,d}{'*' if n not in measured else ' '}" for n in targets)
    print(f"{'stage':14s}{'engine':7s}{head}   fit: s + s/1k symbols, GiB + GiB/1k; slope")
    for k in keys:
        cells = "".join(
            f"{value(n, k, 'seconds'):8.1f} /{value(n, k, 'peak_gib'):6.2f} " for n in targets
        )
        (a_t, b_t), (a_m, b_m) = fits[k]
        exp = slope(sizes, [measured[n][k]["seconds"] for n in sizes])
        print(
            f"{k[0]:14s}{k[1]:7s}{cells}   {a_t:5.1f} + {b_t * 1000:6.1f}, "
            f"{a_m:5.2f} + {b_m * 1000:5.2f}; N^{exp:.2f}"
        )
    if len(sizes) < 2:
        print("(one size measured: growth assumed proportional)")

    print(
        f"\nsizing: nightly chain ({', '.join(NIGHTLY)}) within {args.deadline_s:.0f} s; "
        f"nodes of {args.node_cores} cores / {args.node_gib:.0f} GiB for the Ray feature build"
    )
    print(
        f"{'symbols':>9s} {'':1s} {'1 process s':>12s} {'peak GiB':>9s} {'Ray nodes':>10s}"
        f" {'training set: Ray nodes':>24s}"
    )
    ray_k = ("features", "ray")
    for n in targets:
        serial = sum(value(n, (s, "local"), "seconds") for s in NIGHTLY if s != "features")
        local = serial + value(n, ("features", "local"), "seconds")
        peak = max(value(n, (s, "local"), "peak_gib") for s in NIGHTLY)
        # The Ray build's core-seconds (measured on `cores`) spread over k nodes' cores, and its
        # memory (driver and every Ray process of the one node it ran on) over the k nodes: its
        # blocks write the offline tables themselves, so nothing gathers the frame. The other
        # nightly stages run in one process (materialize and scan read a night's rows).
        work_cs = value(n, ray_k, "seconds") * cores
        ray_mem = value(n, ray_k, "peak_gib")
        others = max(value(n, (s, "local"), "peak_gib") for s in NIGHTLY if s != "features")
        nodes = "-"
        for count in range(1, 1025):
            t = serial + work_cs / (count * args.node_cores)
            fits_memory = ray_mem / count <= args.node_gib and others <= args.node_gib
            if t <= args.deadline_s and fits_memory:
                nodes = str(count)
                break
        # The monthly training set on the Ray offline store: its summed memory spread over the
        # nodes (the driver keeps the finished frame, which the training tasks read).
        ts_mem = value(n, ("training set", "ray"), "peak_gib")
        ts_nodes = next((str(c) for c in range(1, 1025) if ts_mem / c <= args.node_gib), "-")
        mark = "*" if n not in measured else " "
        print(f"{n:9,d} {mark} {local:12.0f} {peak:9.2f} {nodes:>10s} {ts_nodes:>24s}")


if __name__ == "__main__":
    raise SystemExit(main())
