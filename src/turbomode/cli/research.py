"""``turbomode research``: the factor tear sheet of a score over a window, a thin adapter over
:mod:`turbomode.research`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.table import Table

from turbomode.cli.common import console, err, handles_errors, parse_day, settings_from
from turbomode.errors import SchemaError
from turbomode.io import read_table

if TYPE_CHECKING:
    from turbomode.config import Settings
    from turbomode.data.ingest import MarketData

_KINDS = "reversal:DAYS, momentum:DAYS, feature:NAME or file:PATH.parquet"


def _days(kind: str, arg: str, default: int) -> int:
    if not arg:
        return default
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"--score {kind}:DAYS needs a whole number of days ≥ 1, got {arg!r}")
    return int(arg)


def _feature_frame(settings: Settings, md: MarketData, name: str) -> pd.DataFrame:
    """The feature as built into the offline store when it is there, else computed now from
    the clean store (only that feature)."""
    import pyarrow.parquet as pq

    from turbomode.feature_store import STOCK_VIEW, TS, feast_dir

    path = feast_dir(settings) / "offline" / f"{STOCK_VIEW}.parquet"
    if path.exists() and name in pq.read_schema(path).names:
        table = pd.read_parquet(path, columns=["symbol", TS, name])
        dates = pd.DatetimeIndex(table.pop(TS)).tz_convert(None).normalize()
        return table.assign(date=dates)
    from turbomode.features.engine import build_features

    return build_features(
        md.prices, md.market, md.universe.sector_map(), features=[name], macro=md.macro
    ).frame


def _score_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"score file {path} does not exist")
    frame = read_table(path, "score file")
    missing = [c for c in ("symbol", "date", "score") if c not in frame.columns]
    if missing:
        raise SchemaError(f"score file {path} lacks column(s) {', '.join(missing)}")
    try:
        frame["date"] = pd.to_datetime(frame["date"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"score file {path}: column date is not dates ({exc})") from None
    return frame


def make_scores(spec: str, settings: Settings, md: MarketData) -> tuple[str, pd.DataFrame]:
    """(name, scores) for a ``--score`` spec; errors name the spec's problem."""
    from turbomode.research import scores

    kind, _, arg = spec.partition(":")
    if kind == "reversal":
        days = _days(kind, arg, 5)
        return f"reversal:{days}", scores.reversal(md.prices, days)
    if kind == "momentum":
        days = _days(kind, arg, 20)
        return f"momentum:{days}", scores.momentum(md.prices, days)
    if kind == "feature":
        if not arg:
            raise ValueError("--score feature:NAME needs a feature name")
        return f"feature:{arg}", scores.feature_score(_feature_frame(settings, md, arg), arg)
    if kind == "file":
        if not arg:
            raise ValueError("--score file:PATH needs a path")
        path = Path(arg)
        return f"file:{path.stem}", _score_file(path)
    raise ValueError(f"unknown --score kind {kind!r}: expected {_KINDS}")


def _headline(headline: dict[str, float], title: str) -> Table:
    from turbomode.research.tearsheet import HEADLINE

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, label, fmt in HEADLINE:
        value = headline.get(key)
        shown = "—" if value is None or value != value else fmt.format(value)
        table.add_row(label, shown)
    return table


@handles_errors
def research_command(
    ctx: typer.Context,
    score: Annotated[str, typer.Option("--score", help=f"What to measure: {_KINDS}.")],
    start: Annotated[str, typer.Option("--start", help="First day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last day (YYYY-MM-DD).")],
    horizon: Annotated[int, typer.Option("--horizon", help="Return horizon in days.")] = 1,
    cost_bps: Annotated[
        float, typer.Option("--cost-bps", help="Cost per unit traded, basis points.")
    ] = 10.0,
    smooth: Annotated[
        int, typer.Option("--smooth", help="Average each symbol's last N scores for the book.")
    ] = 1,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report directory (default: data/reports/research/NAME)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the headline as JSON.")] = False,
) -> None:
    """A score's factor tear sheet: IC (pooled, within sectors, by month, decay), deciles and
    the long/short book gross and net — as HTML with plots, and JSON."""
    from turbomode.data.ingest import load_clean
    from turbomode.research.tearsheet import tear_sheet

    settings = settings_from(ctx)
    s, e = parse_day(start, "--start"), parse_day(end, "--end")
    if e < s:
        raise ValueError(f"--end {e} is before --start {s}")
    if horizon < 1:
        raise ValueError(f"--horizon must be ≥ 1, got {horizon}")
    if smooth < 1:
        raise ValueError(f"--smooth must be ≥ 1, got {smooth}")
    if cost_bps < 0:
        raise ValueError(f"--cost-bps must be ≥ 0, got {cost_bps:g}")
    md = load_clean(settings)
    name, frame = make_scores(score, settings, md)
    sheet = tear_sheet(
        frame,
        md.prices,
        md.universe.sector_map(),
        s,
        e,
        name,
        horizon=horizon,
        cost_bps=cost_bps,
        smooth=smooth,
        universe=md.universe,
    )
    target = out or settings.data.data_dir / "reports" / "research" / _safe(name)
    paths = sheet.write(target)
    if as_json:
        doc = sheet.to_dict()
        doc = {k: doc[k] for k in ("name", "window", "horizon", "counts", "headline")}
        print(json.dumps({**doc, "html": str(paths["html"]), "json": str(paths["json"])}))
        return
    c = sheet.counts
    err.print(
        f"research: {c['rows']:,} scored rows, {c['symbols']} symbols, {c['days']} days; "
        f"{c['rows_outside_the_index']:,} rows of non-members of the index on their date left out"
    )
    console.print(_headline(sheet.headline(), f"{name}, {s} → {e}, horizon {horizon}d"))
    console.print(f"tear sheet: {paths['html']}", soft_wrap=True, highlight=False, markup=False)


def _safe(name: str) -> str:
    """A directory name from a score name ("reversal:5" → "reversal_5")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "score"
