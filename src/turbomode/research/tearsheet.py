"""The factor tear sheet: how a user decides whether a score is worth deploying.

One call measures a score (a model's, a single feature's, a baseline rule's) over a window
with the research protocol's yardstick — the daily rank IC from the next open and from the
next close, pooled and within sectors, its monthly path and decay over 1–10 days, the mean
forward return by decile, and a top-minus-bottom book gross and net of costs, pooled and
sector-neutral. :meth:`TearSheet.write` leaves a JSON file with every figure, PNG plots and
an HTML page that reads on its own; :func:`compare` and :func:`write_comparison` put
several scores side by side (the tables in ``docs/research/``).

t-statistics are over days. For a horizon above 1 the daily forward windows overlap, so the
t of the IC is overstated by roughly √horizon; the headline says so.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode.data.universe import Universe
from turbomode.errors import SchemaError, TurboModeError
from turbomode.io import atomic_path, atomic_write_json, atomic_write_text
from turbomode.research import factor as fx

DECAY_HORIZONS = tuple(range(1, 11))
SECTOR_MIN_OBS = 5  # a sector alone has ~45 names in the S&P 500, fewer in small universes
PLOTS = ("cumulative_ic", "ic_by_month", "ic_decay", "deciles", "long_short", "sector_ic")

# (key, label, format) of the headline figures, in the order a reader wants them.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("ic_open", "IC, next open", "{:+.4f}"),
    ("ic_open_t", "  t", "{:+.2f}"),
    ("ic_close", "IC, next close", "{:+.4f}"),
    ("ic_close_t", "  t", "{:+.2f}"),
    ("ic_open_sector", "IC within sectors, next open", "{:+.4f}"),
    ("ic_open_sector_t", "  t", "{:+.2f}"),
    ("ic_close_sector", "IC within sectors, next close", "{:+.4f}"),
    ("ic_close_sector_t", "  t", "{:+.2f}"),
    ("ls_sharpe_gross", "L/S Sharpe gross", "{:+.2f}"),
    ("ls_sharpe_net", "L/S Sharpe net", "{:+.2f}"),
    ("ls_turnover", "L/S turnover per day", "{:.2f}"),
    ("ls_ann_net", "L/S annual return net", "{:+.1%}"),
    ("ls_sector_sharpe_gross", "sector-neutral L/S Sharpe gross", "{:+.2f}"),
    ("ls_sector_sharpe_net", "sector-neutral L/S Sharpe net", "{:+.2f}"),
    ("ls_sector_turnover", "sector-neutral L/S turnover per day", "{:.2f}"),
    ("top_minus_bottom", "top − bottom decile, mean daily", "{:+.4%}"),
)


class EmptyWindowError(TurboModeError, ValueError):
    """No finite score falls inside the requested window."""


@dataclass
class TearSheet:
    """Every figure of one score's tear sheet (frames as computed by :mod:`.factor`)."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp
    horizon: int
    cost_bps: float
    smooth: int
    counts: dict[str, int]
    ic: pd.DataFrame  # daily; columns open, close, open_sector, close_sector
    ic_stats: dict[str, dict[str, float]]  # the same keys → ic_summary
    by_month: pd.DataFrame  # open basis
    decay: dict[str, pd.DataFrame]  # "open" / "close" → ic_decay
    deciles: pd.DataFrame  # open basis, the sheet's horizon
    sectors: pd.DataFrame  # per sector: mean/t/n_days for each basis
    books: dict[str, pd.DataFrame]  # "pooled" / "sector_neutral" → long_short
    book_stats: dict[str, dict[str, float]]  # the same keys → ls_summary

    @property
    def cumulative_ic(self) -> pd.Series:
        """Running sum of the daily open-basis IC: a straight line is a steady score; a
        curve that flattens says the edge faded inside the window."""
        return self.ic["open"].fillna(0.0).cumsum().rename("cumulative_ic")

    def headline(self) -> dict[str, float]:
        """The figures a reader looks at first (keys of :data:`HEADLINE`)."""
        out: dict[str, float] = {}
        for basis in ("open", "close"):
            for key in (basis, f"{basis}_sector"):
                out[f"ic_{key}"] = self.ic_stats[key]["mean"]
                out[f"ic_{key}_t"] = self.ic_stats[key]["t"]
        for prefix, book in (("ls", "pooled"), ("ls_sector", "sector_neutral")):
            s = self.book_stats[book]
            out[f"{prefix}_sharpe_gross"] = s["sharpe_gross"]
            out[f"{prefix}_sharpe_net"] = s["sharpe_net"]
            out[f"{prefix}_turnover"] = s["mean_turnover"]
            out[f"{prefix}_ann_net"] = s["ann_mean_net"]
        d = self.deciles["mean_ret"]
        out["top_minus_bottom"] = float(d.iloc[-1] - d.iloc[0]) if len(d) else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every figure as plain JSON-ready values (NaN as None)."""
        return _clean(
            {
                "name": self.name,
                "window": {"start": _day(self.start), "end": _day(self.end)},
                "horizon": self.horizon,
                "cost_bps": self.cost_bps,
                "smooth": self.smooth,
                "counts": self.counts,
                "headline": self.headline(),
                "ic_summary": self.ic_stats,
                "ic_daily": _columns(self.ic.assign(cumulative_open=self.cumulative_ic)),
                "ic_by_month": _records(self.by_month),
                "ic_decay": {k: _records(v) for k, v in self.decay.items()},
                "deciles": _records(self.deciles),
                "sector_ic": _records(self.sectors),
                "long_short": {
                    k: {"summary": self.book_stats[k], "daily": _columns(v)}
                    for k, v in self.books.items()
                },
            }
        )

    def write(self, out_dir: Path | str) -> dict[str, Path]:
        """Write tearsheet.json, the PNG plots and tearsheet.html (each atomically) into
        ``out_dir``; returns the paths by name ("json", "html" and one per plot)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, figure in _figures(self).items():
            path = out / f"{name}.png"
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
            paths[name] = path
        paths["json"] = out / "tearsheet.json"
        atomic_write_json(self.to_dict(), paths["json"])
        paths["html"] = out / "tearsheet.html"
        atomic_write_text(_html(self), paths["html"])
        return paths


# --------------------------------------------------------------------------- building


def tear_sheet(
    scores: pd.DataFrame,
    prices: pd.DataFrame,
    sectors: Mapping[str, str],
    start: Any,
    end: Any,
    name: str,
    horizon: int = 1,
    cost_bps: float = 10.0,
    smooth: int = 1,
    n: int = 10,
    universe: Universe | None = None,
) -> TearSheet:
    """Measure ``scores`` (symbol, date, score) over [start, end] against ``prices``.

    Only finite scores dated inside the window count, and with ``universe`` only those of
    index members on their date (:meth:`Universe.point_in_time`: a survivors-only price file
    otherwise ranks stocks that were not in the index yet); the prices may run past ``end``
    (the forward returns of the last days need them). ``sectors`` maps symbol → sector; symbols
    without one count in the pooled figures only. The pooled IC, deciles and IC by month use
    the ``horizon``-day returns; the long/short book is the daily open-to-open one of
    :func:`.factor.long_short` (``smooth`` days of score averaging, ``cost_bps`` per unit
    traded). Raises :class:`EmptyWindowError` when nothing falls in the window.
    """
    fx._require(scores, ["symbol", "date", "score"], "scores")
    if horizon < 1:
        raise ValueError(f"horizon must be ≥ 1, got {horizon}")
    s0, e0 = pd.Timestamp(start), pd.Timestamp(end)
    if e0 < s0:
        raise ValueError(f"end {_day(e0)} is before start {_day(s0)}")
    sc = pd.DataFrame(
        {
            "symbol": scores["symbol"].to_numpy(),
            "date": pd.to_datetime(scores["date"]).to_numpy(),
            "score": fx._floats(scores["score"]),
        }
    )
    sc = sc[np.isfinite(sc["score"].to_numpy()) & sc["date"].between(s0, e0)]
    in_window = len(sc)
    if universe is not None:
        sc = universe.point_in_time(sc)
    dups = int(sc.duplicated(["symbol", "date"]).sum())
    if dups:
        raise SchemaError(f"scores for {name!r} have {dups} duplicate (symbol, date) row(s)")
    if sc.empty:
        raise EmptyWindowError(f"no finite scores for {name!r} between {_day(s0)} and {_day(e0)}")
    px = prices[
        prices["symbol"].isin(sc["symbol"].unique()) & (pd.to_datetime(prices["date"]) >= s0)
    ]
    horizons = sorted({*DECAY_HORIZONS, horizon})
    fwd = fx.forward_returns(px, horizons)
    frame = sc.merge(fwd, on=["symbol", "date"], how="left")
    frame["sector"] = frame["symbol"].map(dict(sectors))
    sectored = frame[frame["sector"].notna()]

    ro, rc = f"ret_open_{horizon}", f"ret_close_{horizon}"
    ic = pd.DataFrame(
        {
            "open": fx.daily_ic(frame, "score", ro),
            "close": fx.daily_ic(frame, "score", rc),
            "open_sector": fx.daily_ic(sectored, "score", ro, group="sector"),
            "close_sector": fx.daily_ic(sectored, "score", rc, group="sector"),
        }
    )
    ic.index.name = "date"
    per_sector = [
        fx.sector_ic(sectored, "score", col, min_obs=SECTOR_MIN_OBS)[
            ["mean", "t", "n_days"]
        ].add_suffix(f"_{basis}")
        for basis, col in (("open", ro), ("close", rc))
    ]
    books = {
        "pooled": fx.long_short(frame, "score", px, n=n, cost_bps=cost_bps, smooth=smooth),
        "sector_neutral": fx.long_short(
            sectored, "score", px, n=n, cost_bps=cost_bps, smooth=smooth, group="sector"
        ),
    }
    return TearSheet(
        name=name,
        start=s0,
        end=e0,
        horizon=horizon,
        cost_bps=float(cost_bps),
        smooth=smooth,
        counts={
            "rows": len(frame),
            "symbols": int(frame["symbol"].nunique()),
            "days": int(frame["date"].nunique()),
            "rows_with_return": int(np.isfinite(frame[ro].to_numpy()).sum()),
            "symbols_without_sector": int(frame.loc[frame["sector"].isna(), "symbol"].nunique()),
            "rows_outside_the_index": in_window - len(frame),
        },
        ic=ic,
        ic_stats={k: fx.ic_summary(ic[k]) for k in ic.columns},
        by_month=fx.ic_by_month(ic["open"]),
        decay={
            b: fx.ic_decay(frame, "score", fwd, DECAY_HORIZONS, basis=b) for b in ("open", "close")
        },
        deciles=fx.decile_returns(frame, "score", ro, n=n),
        sectors=per_sector[0].join(per_sector[1], how="outer"),
        books=books,
        book_stats={k: fx.ls_summary(v) for k, v in books.items()},
    )


# --------------------------------------------------------------------------- comparing


def compare(sheets: Sequence[TearSheet]) -> pd.DataFrame:
    """Headline figures of several scores side by side (one row per sheet, by name)."""
    table = pd.DataFrame([s.headline() for s in sheets], index=[s.name for s in sheets])
    table.index.name = "score"
    return table


def write_comparison(
    sheets: Sequence[TearSheet], out_dir: Path | str, title: str = "Scores compared"
) -> dict[str, Path]:
    """comparison.md (for ``docs/research/``), comparison.html and comparison.json of the
    headline figures; each sheet's window is listed so unlike windows are visible."""
    out = Path(out_dir)
    table = compare(sheets)
    windows = {s.name: f"{_day(s.start)} → {_day(s.end)}, h={s.horizon}" for s in sheets}
    md = [f"# {title}", ""]
    md += [f"- **{k}**: {v}" for k, v in windows.items()]
    md += ["", "| figure | " + " | ".join(table.index) + " |"]
    md += ["|---|" + "---:|" * len(table.index)]
    for key, label, fmt in HEADLINE:
        cells = [_fmt(table.at[i, key], fmt) for i in table.index]
        md.append(f"| {label.strip()} | " + " | ".join(cells) + " |")
    paths = {"md": out / "comparison.md", "html": out / "comparison.html"}
    atomic_write_text("\n".join(md) + "\n", paths["md"])
    body = _headline_table(table)
    listed = "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in windows.items())
    atomic_write_text(_page(title, f"<ul>{listed}</ul>{body}"), paths["html"])
    paths["json"] = out / "comparison.json"
    atomic_write_json(
        _clean({"windows": windows, "headline": table.to_dict(orient="index")}), paths["json"]
    )
    return paths


# --------------------------------------------------------------------------- plain values


def _day(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d")


def _clean(obj: Any) -> Any:
    """Recursively plain Python: numpy scalars unwrapped, NaN/inf → None, dates → ISO days."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, pd.Timestamp):
        return _day(obj)
    return obj


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A dated frame as {"date": [...], column: [...]} (compact for long daily series)."""
    out: dict[str, list[Any]] = {"date": [_day(d) for d in pd.DatetimeIndex(frame.index)]}
    for col in frame.columns:
        out[str(col)] = frame[col].tolist()
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.reset_index().to_dict("records")]


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return fmt.format(value)


# --------------------------------------------------------------------------- plots


def _figures(sheet: TearSheet) -> dict[str, Any]:
    """The plots as matplotlib Figures (the object API: no pyplot state, no GUI backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # a core install; catboost (the train extra) brings it in
        raise TurboModeError(
            "the tear sheet's plots need matplotlib: pip install matplotlib"
        ) from None

    def fig(title: str) -> tuple[Any, Any]:
        f = Figure(figsize=(8, 3.6))
        ax = f.add_subplot()
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
        return f, ax

    out: dict[str, Any] = {}
    f, ax = fig("Cumulative daily IC (next open)")
    ax.plot(sheet.cumulative_ic.index, sheet.cumulative_ic.to_numpy(), color="C0")
    ax.axhline(0, color="grey", lw=0.8)
    f.autofmt_xdate()
    out["cumulative_ic"] = f

    f, ax = fig("Mean IC by month (next open)")
    m = sheet.by_month
    ax.bar(m.index.astype(str), m["mean"].to_numpy(), color=np.where(m["mean"] >= 0, "C0", "C3"))
    ax.axhline(0, color="grey", lw=0.8)
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    out["ic_by_month"] = f

    f, ax = fig("IC decay over horizons")
    for basis, style in (("open", "o-"), ("close", "s--")):
        d = sheet.decay[basis]
        ax.plot(d.index, d["mean"].to_numpy(), style, label=f"from next {basis}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("horizon (days)")
    ax.set_xticks(list(DECAY_HORIZONS))
    ax.legend(fontsize=8)
    out["ic_decay"] = f

    f, ax = fig(f"Mean {sheet.horizon}-day return by score decile (next open)")
    d = sheet.deciles
    ax.bar(d.index.astype(str), d["mean_ret"].to_numpy() * 1e4, color="C0")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("decile (1 = lowest score)")
    ax.set_ylabel("bp")
    out["deciles"] = f

    f, ax = fig(f"Long/short equity, {sheet.cost_bps:g} bp per unit traded")
    for key, label, color in (
        ("pooled", "pooled", "C0"),
        ("sector_neutral", "sector-neutral", "C2"),
    ):
        book = sheet.books[key]
        for col, style in (("gross", ":"), ("net", "-")):
            eq = np.cumprod(1.0 + book[col].to_numpy())
            ax.plot(book.index, eq, style, color=color, label=f"{label} {col}")
    ax.axhline(1, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    f.autofmt_xdate()
    out["long_short"] = f

    f, ax = fig("Mean IC inside each sector alone (next open)")
    s = sheet.sectors["mean_open"].dropna()
    ax.barh(s.index.astype(str), s.to_numpy(), color=np.where(s >= 0, "C0", "C3"))
    ax.axvline(0, color="grey", lw=0.8)
    ax.tick_params(axis="y", labelsize=8)
    out["sector_ic"] = f
    return out


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:3px 10px;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{text-align:left}
img{max-width:100%;display:block;margin:1em 0}.note{color:#666;font-size:90%}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
        f"</title><style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>\n"
    )


def _headline_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.index)
    rows = []
    for key, label, fmt in HEADLINE:
        cells = "".join(f'<td class="n">{_fmt(table.at[i, key], fmt)}</td>' for i in table.index)
        shown = _e(label.strip()) if label == label.strip() else f"&emsp;{_e(label.strip())}"
        rows.append(f"<tr><td>{shown}</td>{cells}</tr>")
    return f"<table><tr><th>figure</th>{head}</tr>{''.join(rows)}</table>"


def _html(sheet: TearSheet) -> str:
    c = sheet.counts
    intro = (
        f"<p>{_day(sheet.start)} → {_day(sheet.end)} · horizon {sheet.horizon} day(s) · "
        f"{c['symbols']:,} symbols · {c['days']:,} days · {c['rows']:,} scored rows · "
        f"costs {sheet.cost_bps:g} bp per unit traded · score smoothing {sheet.smooth} day(s)</p>"
        '<p class="note">IC: daily Spearman rank correlation of the score with the forward '
        "return from the next open (what the platform trades) and from the next close; "
        "within sectors: ranks centred inside each sector. t over days"
        + (
            f" (windows of {sheet.horizon} days overlap, so t is overstated ≈ √{sheet.horizon})"
            if sheet.horizon > 1
            else ""
        )
        + ". Long/short: top minus bottom decile, bought at the next open, held one day, "
        "equal weight; turnover is the share of the book's names replaced a day (1.0: all), "
        "and every unit of notional traded pays the cost.</p>"
    )
    headline = _headline_table(compare([sheet]))
    plots = "".join(
        f'<h2>{_e(title)}</h2><img src="{name}.png" alt="{_e(title)}">'
        for name, title in (
            ("cumulative_ic", "Cumulative IC"),
            ("ic_by_month", "IC by month"),
            ("ic_decay", "IC decay"),
            ("deciles", "Return by decile"),
            ("long_short", "Long/short equity"),
            ("sector_ic", "IC by sector"),
        )
    )
    sec = sheet.sectors
    rows = "".join(
        f"<tr><td>{_e(i)}</td>"
        + "".join(
            f'<td class="n">{_fmt(sec.at[i, k], f)}</td>'
            for k, f in (
                ("mean_open", "{:+.4f}"),
                ("t_open", "{:+.2f}"),
                ("mean_close", "{:+.4f}"),
                ("t_close", "{:+.2f}"),
                ("n_days_open", "{:,.0f}"),
            )
        )
        + "</tr>"
        for i in sec.index
    )
    sector_table = (
        "<h2>IC inside each sector</h2><table><tr><th>sector</th><th>IC open</th><th>t</th>"
        f"<th>IC close</th><th>t</th><th>days</th></tr>{rows}</table>"
    )
    return _page(f"Tear sheet: {sheet.name}", intro + headline + plots + sector_table)
