"""The backtest report: one self-contained HTML file, a JSON summary and the trades as CSV.

The charts are inline SVG drawn here (no matplotlib, no JavaScript, no CDN): the report opens
offline, diffs as text, and needs no plotting dependency the project does not declare. Every
file is written atomically (:mod:`turbomode.io`), so a reader never sees half a report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode.backtest.engine import BacktestResult
from turbomode.backtest.performance import buy_and_hold, drawdown, summarize
from turbomode.io import atomic_write_json, atomic_write_text

COLORS = ("#1f6feb", "#8b949e", "#d1242f")
MAX_POINTS = 1500  # per line: more adds bytes, not information, at 900 px wide


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put its files."""

    html: Path
    summary: Path
    trades: Path


def _pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x) * 100:.2f}%"


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    f = float(x)
    if math.isnan(f):
        return "–"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f:,.{digits}f}"


def _int(x: Any) -> str:
    return "–" if x is None else f"{int(x):,}"


HEADLINE: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("final_equity", "Final equity", _num),
    ("total_return", "Total return", _pct),
    ("cagr", "CAGR", _pct),
    ("volatility", "Volatility (ann.)", _pct),
    ("sharpe", "Sharpe (rf = 0)", _num),
    ("sortino", "Sortino", _num),
    ("max_drawdown", "Max drawdown", _pct),
    ("trades", "Trades", _int),
    ("win_rate", "Win rate", _pct),
    ("avg_return", "Avg trade return (net)", _pct),
    ("profit_factor", "Profit factor", _num),
    ("exposure", "Exposure (days)", _pct),
    ("avg_gross_exposure", "Avg gross exposure", _pct),
    ("annual_turnover", "Turnover (per year)", _num),
    ("commission", "Commissions", _num),
    ("slippage_cost", "Slippage cost", _num),
)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(
    rows: Sequence[Mapping[Any, Any]],
    columns: Sequence[tuple[str, str, Callable[[Any], str]]],
    css: str = "",
) -> str:
    if not rows:
        return "<p class='none'>none</p>"
    head = "".join(f"<th>{_esc(label)}</th>" for _, label, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(fmt(r.get(key)))}</td>" for key, _, fmt in columns) + "</tr>"
        for r in rows
    )
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _thin(s: pd.Series) -> pd.Series:
    if len(s) <= MAX_POINTS:
        return s
    step = math.ceil(len(s) / MAX_POINTS)
    keep = np.zeros(len(s), dtype=bool)
    keep[::step] = True
    keep[-1] = True
    return s[keep]


def line_chart(
    series: Mapping[str, pd.Series],
    title: str,
    y_format: Callable[[float], str],
    width: int = 900,
    height: int = 260,
) -> str:
    """An inline SVG line chart of date-indexed series sharing one y axis."""
    left, right, top, bottom = 70, 40, 28, 32
    pw, ph = width - left - right, height - top - bottom
    clean = {k: _thin(v.dropna()) for k, v in series.items() if len(v.dropna())}
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{_esc(title)}'>",
        f"<text x='{left}' y='18' font-size='14' font-weight='bold'>{_esc(title)}</text>",
    ]
    if not clean:
        return "".join([*parts, "</svg>"])
    t0 = min(v.index.min() for v in clean.values())
    t1 = max(v.index.max() for v in clean.values())
    y0 = min(float(v.min()) for v in clean.values())
    y1 = max(float(v.max()) for v in clean.values())
    if y1 == y0:
        y0, y1 = y0 - 1.0, y1 + 1.0
    span = max((t1 - t0).total_seconds(), 1.0)

    def sx(t: pd.Timestamp) -> float:
        return left + (t - t0).total_seconds() / span * pw

    def sy(y: float) -> float:
        return top + (1.0 - (y - y0) / (y1 - y0)) * ph

    parts.append(
        f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#d0d7de'/>"
    )
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        py = sy(y)
        parts.append(
            f"<line x1='{left}' x2='{left + pw}' y1='{py:.1f}' y2='{py:.1f}' stroke='#eaeef2'/>"
            f"<text x='{left - 6}' y='{py + 4:.1f}' font-size='11' text-anchor='end'>"
            f"{_esc(y_format(y))}</text>"
        )
    for k in range(6):
        t = t0 + (t1 - t0) * k / 5
        px = sx(t)
        parts.append(
            f"<text x='{px:.1f}' y='{top + ph + 18}' font-size='11' text-anchor='middle'>"
            f"{t.date().isoformat()}</text>"
        )
    for n, (name, s) in enumerate(clean.items()):
        color = COLORS[n % len(COLORS)]
        xs = pd.DatetimeIndex(s.index)
        pts = " ".join(
            f"{sx(t):.1f},{sy(float(y)):.1f}"
            for t, y in zip(xs, s.to_numpy(dtype=float), strict=True)
        )
        parts.append(
            f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>"
            f"<text x='{left + pw - 190 * (len(clean) - 1 - n)}' y='18' font-size='12' "
            f"text-anchor='end' fill='{color}'>— {_esc(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _money(y: float) -> str:
    return f"{y:,.0f}"


def _pct0(y: float) -> str:
    return f"{y * 100:.1f}%"


TRADE_TABLE: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("trade_id", "#", _int),
    ("symbol", "Symbol", _text),
    ("sector", "Sector", _text),
    ("side", "Side", _text),
    ("signal_date", "Signal", _text),
    ("entry_date", "Entry", _text),
    ("entry_fill", "Entry fill", lambda x: _num(x, 4)),
    ("shares", "Shares", lambda x: _num(x, 0)),
    ("exit_date", "Exit", _text),
    ("exit_fill_avg", "Exit fill (avg)", lambda x: _num(x, 4)),
    ("exit_reason", "Reason", _text),
    ("commission", "Commission", _num),
    ("net_pnl", "Net P&L", _num),
    ("net_return", "Net return", _pct),
)
GROUP_TABLE: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("trades", "Trades", _int),
    ("win_rate", "Win rate", _pct),
    ("avg_return", "Avg return", _pct),
    ("profit_factor", "Profit factor", _num),
    ("net_pnl", "Net P&L", _num),
)
REGIME_DAYS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("regime", "Regime", _text),
    ("days", "Days", _int),
    ("mean_return", "Mean daily return", lambda x: f"{float(x) * 1e4:.1f} bp"),
    ("compounded_return", "Compounded", _pct),
    ("sharpe", "Sharpe", _num),
    ("exposure", "Exposure", _pct),
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1f2328}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.none{color:#8b949e}pre{background:#f6f8fa;padding:8px;font-size:12px}
"""


def render_html(
    result: BacktestResult,
    summary: Mapping[str, Any],
    benchmark_daily: pd.DataFrame | None = None,
    title: str = "TurboMode backtest",
) -> str:
    """The report page: headline beside the benchmark, equity and drawdown charts, by-sector
    and by-regime tables, the first ``report_trades`` trades, skips and the settings."""
    cfg = result.settings
    strat = summary["strategy"]
    bench = summary.get("benchmark") or {}
    bname = str(bench.get("symbol", cfg.benchmark_symbol))
    headline = [
        {"metric": label, "strategy": fmt(strat.get(key)), "bench": fmt(bench.get(key))}
        for key, label, fmt in HEADLINE
    ]
    cols: list[tuple[str, str, Callable[[Any], str]]] = [
        ("metric", "Metric", _text),
        ("strategy", f"Strategy ({result.policy})", _text),
    ]
    if bench:
        cols.append(("bench", f"{bname} buy & hold", _text))
    equity = {"Strategy": result.daily["equity"]}
    dd = {"Strategy": drawdown(result.daily["equity"], cfg.initial_cash)}
    if benchmark_daily is not None:
        equity[f"{bname} buy & hold"] = benchmark_daily["equity"]
        dd[f"{bname} buy & hold"] = drawdown(benchmark_daily["equity"], cfg.initial_cash)
    trades = result.trades.head(cfg.report_trades).to_dict(orient="records")
    by_regime = summary["by_regime"]
    skipped = [{"reason": k, "count": v} for k, v in summary["skipped"].items()]
    period = summary["period"]
    settings_rows = [{"k": k, "v": v} for k, v in cfg.model_dump().items()]
    body = [
        f"<h1>{_esc(title)}</h1>",
        f"<p>{_esc(period['start'])} → {_esc(period['end'])}, {period['days']} trading days; "
        f"exit rules <b>{_esc(result.policy)}</b>; signals act on the next bar's open.</p>",
        "<h2>Headline</h2>",
        _table(headline, cols, "headline"),
        "<h2>Equity</h2>",
        line_chart(equity, "Equity", _money),
        "<h2>Drawdown</h2>",
        line_chart(dd, "Drawdown from the running peak", _pct0),
        "<h2>By sector</h2>",
        _table(summary["by_sector"], [("sector", "Sector", _text), *GROUP_TABLE], "sector"),
        "<h2>By regime</h2>",
        "<h3>Trades by the regime of their signal date</h3>",
        _table(by_regime["trades"], [("regime", "Regime", _text), *GROUP_TABLE], "regime"),
        "<h3>Days by regime</h3>",
        _table(by_regime["days"], REGIME_DAYS, "regime-days"),
        f"<h2>Trades (first {min(cfg.report_trades, len(result.trades))} of "
        f"{len(result.trades)})</h2>",
        _table(trades, TRADE_TABLE, "trades"),
        "<h2>Skipped signals</h2>",
        _table(skipped, [("reason", "Reason", _text), ("count", "Count", _int)], "skipped"),
        "<h2>Settings</h2>",
        _table(settings_rows, [("k", "Setting", _text), ("v", "Value", _text)], "settings"),
        f"<p>Bars widened to contain their open and close: {result.repaired_bars}. Sharpe and "
        "Sortino are daily, annualized with √252, risk-free rate 0.</p>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


BOOK_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "total return", "{:+.1%}"),
    ("cagr", "CAGR", "{:+.1%}"),
    ("sharpe", "Sharpe (rf 0)", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("max_drawdown", "max drawdown", "{:.1%}"),
    ("trades", "trades", "{:,.0f}"),
    ("win_rate", "win rate", "{:.1%}"),
    ("avg_return", "average trade, net", "{:+.2%}"),
    ("profit_factor", "profit factor", "{:.2f}"),
    ("avg_gross_exposure", "average gross exposure", "{:.0%}"),
)


def books_markdown(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """One Markdown row per book (``atr``, ``atr_gated``, …) and one for the benchmark's buy
    and hold, so the gated book reads beside the ungated one (``books.md``, the README)."""

    def cell(value: Any, fmt: str) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "—"
        return fmt.format(value).replace("-", "−")

    head = "| book | " + " | ".join(label for _, label, _ in BOOK_COLUMNS) + " |"
    lines = [head, "|---" * (len(BOOK_COLUMNS) + 1) + "|"]
    for name, summary in summaries.items():
        rules, gated, _ = name.partition("_gated")
        label = f"{rules} rules, {'gated' if gated else 'ungated'}"
        row = [cell(summary["strategy"].get(k), f) for k, _, f in BOOK_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    bench = next((s.get("benchmark") for s in summaries.values() if s.get("benchmark")), None)
    if bench:
        keep = {"total_return", "cagr", "sharpe", "sortino", "max_drawdown"}
        row = [cell(bench.get(k), f) if k in keep else "—" for k, _, f in BOOK_COLUMNS]
        name = bench.get("symbol", "benchmark")
        lines.append(f"| {name} buy-and-hold | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    result: BacktestResult,
    out_dir: Path | str,
    benchmark: pd.DataFrame | None = None,
    title: str = "TurboMode backtest",
) -> ReportPaths:
    """Write ``report.html``, ``summary.json`` and ``trades.csv`` into ``out_dir``; the
    benchmark (e.g. market.parquet's rows) adds the buy-and-hold column and curve."""
    out = Path(out_dir)
    summary = summarize(result, benchmark)
    bh = (
        buy_and_hold(benchmark, result.daily.index, result.settings)
        if benchmark is not None
        else None
    )
    paths = ReportPaths(out / "report.html", out / "summary.json", out / "trades.csv")
    atomic_write_text(render_html(result, summary, bh, title), paths.html)
    atomic_write_json(summary, paths.summary)
    atomic_write_text(result.trades.to_csv(index=False), paths.trades)
    return paths
