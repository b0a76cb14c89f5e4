"""Run the research protocol on ../shared/data and append every figure to the results log.

    python docs/research/run_protocol.py dev [NAME ...]     # walk-forward folds 2018 → 2022
    python docs/research/run_protocol.py report NAME ...   # the report window, once per config

The candidates are listed here, in the order they were tried; `results.jsonl` beside this file
holds every fold of every one, and `README.md` the tables drawn from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from turbomode.data.sources.files import read_frames
from turbomode.research import protocol as rp

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
LOG = HERE / "results.jsonl"

CANDIDATES = {
    c.name: c
    for c in (
        rp.Candidate("pooled_rank_1d"),
        rp.Candidate("sector_scope_rank_1d", scope="sector"),
        rp.Candidate("pooled_universe_rank_1d", target="universe_rank"),
        rp.Candidate("pooled_rank_1d_history18", train_years=18),
        rp.Candidate("pooled_rank_5d", horizon=5),
        rp.Candidate("pooled_rank_1d_small", params={"n_estimators": 100, "num_leaves": 15}),
        # The configuration this protocol replaced, on the same folds (date_step 1, 5.5 years:
        # the stacked ensembles as the platform trained them on 7 years of data).
        rp.Candidate("stacked_sector_1d", kind="stacked", train_years=5, date_step=1),
        rp.Candidate("stacked_sector_5d", horizon=5, kind="stacked", train_years=5, date_step=1),
        # The neural learners (issue #26), each alone, pooled over every sector on the 3-class
        # labels, 5 years of history: the figures that decide whether they join the default.
        rp.Candidate("neural_mlp_1d", kind="neural", arch="mlp", train_years=5),
        rp.Candidate("neural_lstm_1d", kind="neural", arch="lstm", train_years=5),
        rp.Candidate("neural_transformer_1d", kind="neural", arch="transformer", train_years=5),
    )
}
RULES = [(rule, h) for h in (1, 5) for rule in rp.RULES]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["dev", "report", "rules", "sheets", "log", "platform"])
    ap.add_argument("--work", type=Path, default=None, help="bench_train work directory")
    ap.add_argument("names", nargs="*")
    ap.add_argument("--scores", type=Path, default=HERE / "scores")
    ap.add_argument("--folds", default=None, help="comma-separated fold years (default: all)")
    ap.add_argument(
        "--since",
        default="2000-01-01",
        help="first price date of the panel (a later one saves time and memory; keep a year "
        "of warm-up before the earliest training row)",
    )
    args = ap.parse_args(argv)
    if args.phase == "platform":
        return platform_scores(args.work, args.scores)
    if args.phase == "log":
        print(render_log(LOG))
        return 0
    t0 = time.perf_counter()
    prices, market, sectors = read_frames(DATA, args.since, "1993-01-01")
    if args.phase == "sheets":
        return sheets(prices, sectors, args.scores, args.names)
    panel = rp.build_panel(prices, market, sectors)
    print(f"panel {len(panel.frame):,} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.phase == "rules":
        for rule, h in RULES:
            res = rp.evaluate_rule(panel, rule, h)
            rp.append_log(LOG, f"{rule}@{h}d", res)
            print(rule, h, rp.summarize(res), flush=True)
        return 0
    names = args.names or list(CANDIDATES)
    for name in names:
        cand = CANDIDATES[name]
        if args.phase == "dev":
            folds = [int(y) for y in args.folds.split(",")] if args.folds else rp.DEV_FOLDS
            res = rp.evaluate_candidate(panel, cand, folds)
            rp.append_log(LOG, cand, res)
            print(name, {k: round(v, 4) for k, v in rp.summarize(res).items()}, flush=True)
        else:
            res1, scored = rp.report_window(panel, cand)
            rp.append_log(LOG, cand, [res1])
            args.scores.mkdir(parents=True, exist_ok=True)
            scored[["symbol", "date", "score"]].to_parquet(args.scores / f"{name}.parquet")
            print(name, "report", res1.figures, flush=True)
    return 0


COLUMNS = [
    ("ic_open", "IC open", 4),
    ("ic_open_t", "t", 1),
    ("ic_open_sector", "IC open, in sector", 4),
    ("ic_open_sector_t", "t", 1),
    ("ic_close", "IC close", 4),
    ("ic_close_t", "t", 1),
    ("ls_sharpe_gross", "L/S Sharpe gross", 2),
    ("ls_sharpe_net", "net", 2),
    ("turnover", "turnover", 2),
    ("ls_sharpe_net_smooth5", "net, 5-day smoothed", 2),
    ("turnover_smooth5", "turnover", 2),
]


SURVIVORSHIP = (
    "Survivorship bias: measured on today's survivors (current members plus 26 former ones)."
)


def render_log(path: Path) -> str:
    """The results log as Markdown: every fold of every configuration, then fold means."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frame = pd.DataFrame(rows)
    if "turnover_def" not in frame:
        frame["turnover_def"] = None
    old = frame["turnover_def"].isna()  # logged as Σ|Δw|/2 before the definition settled
    for c in ("turnover", "turnover_smooth5"):
        frame.loc[old, c] = frame.loc[old, c] / 2
    head = "| configuration | fold | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    rule = "|---|---|" + "---:|" * len(COLUMNS)

    def line(name: str, fold: str, r: pd.Series) -> str:
        cells = [f"{r[k]:.{d}f}" if pd.notna(r[k]) else "—" for k, _, d in COLUMNS]
        return f"| {name} | {fold} | " + " | ".join(cells) + " |"

    out = ["## Development folds (each year trained only on earlier, purged rows)", ""]
    out += [SURVIVORSHIP, "", head, rule]
    dev = frame[frame["fold"] != "report"]
    for name, g in dev.groupby("name", sort=False):
        out.append(line(f"**{name}**", f"mean of {len(g)}", g[[k for k, _, _ in COLUMNS]].mean()))
        out += [line(name, str(r["fold"]), r) for _, r in g.iterrows()]
    rep = frame[frame["fold"] == "report"]
    if len(rep):
        out += [
            "",
            "## Report window 2023-01-03 → 2024-06-28 (run once per finished configuration)",
        ]
        out += ["", SURVIVORSHIP, "", head, rule]
        out += [line(r["name"], "report", r) for _, r in rep.iterrows()]
    return "\n".join(out)


def platform_scores(work: Path, out: Path) -> int:
    """The report window scored by the models bench_train trained through the platform (on
    rows before 2023 only): score = P(BUY) − P(SELL), per preset and horizon."""
    from turbomode.models.loading import load_ensemble
    from turbomode.models.train import saved_model_dirs

    data = pd.read_parquet(work / "training_set.parquet")
    data = data[(data["date"] >= rp.REPORT_START) & (data["date"] <= rp.REPORT_END)]
    out.mkdir(parents=True, exist_ok=True)
    for models in sorted(work.glob("models_ray_*")):
        preset = models.name.removeprefix("models_ray_")
        for h in (1, 2, 5):
            parts = []
            found = saved_model_dirs(models, [h])
            for directory in dict.fromkeys(found.values()):
                model = load_ensemble(directory)
                keys = [k for k, d in found.items() if d == directory]
                sectors = [k.rsplit("/", 1)[0] for k in keys]
                rows = data[data["sector"].isin(sectors)]
                p = model.predict_proba(rows[model.features])
                parts.append(
                    pd.DataFrame(
                        {"symbol": rows["symbol"], "date": rows["date"], "score": p[:, 2] - p[:, 0]}
                    )
                )
            if parts:
                name = f"platform_{preset}_{h}d"
                pd.concat(parts, ignore_index=True).to_parquet(out / f"{name}.parquet")
                print("scored", name, flush=True)
    return 0


def sheets(prices, sectors, scores_dir: Path, names: list[str]) -> int:
    """Tear sheets of the report window for the saved model scores and the baseline rules,
    and their comparison (docs/research/report/)."""
    from turbomode.research import scores as rules
    from turbomode.research.tearsheet import tear_sheet, write_comparison

    window = dict(start=rp.REPORT_START, end=rp.REPORT_END)
    by_h: dict[int, list] = {1: [], 5: []}
    for path in sorted(scores_dir.glob("*.parquet")):
        name = path.stem
        if names and name not in names:
            continue
        h = int(name.rsplit("_", 1)[1].removesuffix("d"))
        if h not in by_h:
            continue
        sheet = tear_sheet(pd.read_parquet(path), prices, sectors, name=name, horizon=h, **window)
        sheet.write(HERE / "report" / name)
        by_h[h].append(sheet)
        if "rank" in name:  # what the platform would hold: scores smoothed over 5 days
            smooth = tear_sheet(
                pd.read_parquet(path),
                prices,
                sectors,
                name=f"{name}_smooth5",
                horizon=h,
                smooth=5,
                **window,
            )
            smooth.write(HERE / "report" / smooth.name)
            by_h[h].append(smooth)
    for h in (1, 5):
        for label, frame in (
            ("reversal_5d", rules.reversal(prices, 5)),
            ("momentum_20d", rules.momentum(prices, 20)),
        ):
            sheet = tear_sheet(frame, prices, sectors, name=f"{label}@{h}d", horizon=h, **window)
            sheet.write(HERE / "report" / f"{label}_h{h}")
            by_h[h].append(sheet)
        write_comparison(by_h[h], HERE / "report" / f"compare_{h}d", f"Report window, {h}-day")
    log_report(by_h[1] + by_h[5])
    return 0


def log_report(sheets_done: list) -> None:
    """The report window's headline figures into the results log (fold "report"), once per
    finished configuration: the platform-trained models and the baseline rules."""
    logged = {
        (r["name"], r["fold"])
        for r in (json.loads(x) for x in LOG.read_text().splitlines() if x.strip())
    }
    rows = []
    for sheet in sheets_done:
        if (sheet.name, "report") in logged:
            continue
        h = sheet.headline()
        smoothed = sheet.smooth > 1
        figs = {
            "ic_open": h["ic_open"],
            "ic_open_t": h["ic_open_t"],
            "ic_open_sector": h["ic_open_sector"],
            "ic_open_sector_t": h["ic_open_sector_t"],
            "ic_close": h["ic_close"],
            "ic_close_t": h["ic_close_t"],
            "ls_sharpe_gross": None if smoothed else h["ls_sharpe_gross"],
            "ls_sharpe_net": None if smoothed else h["ls_sharpe_net"],
            "turnover": None if smoothed else h["ls_turnover"],
            "ls_sharpe_net_smooth5": h["ls_sharpe_net"] if smoothed else None,
            "turnover_smooth5": h["ls_turnover"] if smoothed else None,
        }
        rows.append({"name": sheet.name, "fold": "report", "turnover_def": "sum|dw|/4", **figs})
    with LOG.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
