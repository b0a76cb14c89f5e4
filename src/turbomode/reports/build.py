"""What a report says, read from the stores, and how it reads as text and as HTML.

A report is about one scan date (``--date``, default the newest scan). ``daily`` covers the days
since the scan before it (a Monday's report sees the weekend's exits); ``weekly`` the seven days
to it. Both carry: the signals of that night by cap class and side (the strongest few of each),
the outcomes whose hold ended in the period and their hit rate, the rolling hit rate by horizon
the outcomes job pushes (:func:`turbomode.outcomes.track.rolling_hit_rate`), each paper
wallet's equity and P&L, the model state (production models, the last retrain, the scan's drift
summary) and what needs attention (:func:`turbomode.status.platform_status`'s problems). The
``retrain`` report is the last retrain run: what it promoted, what the gate refused and why.
Nothing is computed here that another module already computes: the figures are the stores'.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from turbomode.errors import TurboModeError
from turbomode.outcomes.track import rolling_hit_rate
from turbomode.status import Check, platform_status
from turbomode.store import SignalStore

if TYPE_CHECKING:
    from turbomode.config import Settings

Kind = Literal["daily", "weekly", "retrain"]
KINDS: tuple[str, ...] = ("daily", "weekly", "retrain")
SIGNAL_COLUMNS = ("symbol", "sector", "horizon", "confidence", "close", "stop", "target")
OUTCOME_COLUMNS = ("symbol", "side", "horizon", "signal_date", "exit_date", "side_return")
# Drifting models listed (most unusual features over the last 20 trading days first).
DRIFT_SHOWN = 5


@dataclass
class WalletLine:
    name: str
    as_of: date | None
    equity: float
    period_pnl: float
    total_pnl: float
    n_open: int


@dataclass
class Report:
    """One report's figures; :meth:`text` and :meth:`html` render the same content."""

    kind: Kind
    day: date
    start: date
    signals: pd.DataFrame = field(default_factory=pd.DataFrame)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    resolved: pd.DataFrame = field(default_factory=pd.DataFrame)
    rolling: pd.DataFrame = field(default_factory=pd.DataFrame)
    window_days: int = 0
    wallets: list[WalletLine] = field(default_factory=list)
    production_models: int = 0
    retrain: dict[str, Any] | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    attention: list[Check] = field(default_factory=list)

    @property
    def subject(self) -> str:
        if self.kind == "retrain":
            run = self.retrain or {}
            return f"TurboMode retrain {run.get('id')}: {run.get('status')} ({self.day})"
        span = f"{self.start} to {self.day}" if self.kind == "weekly" else str(self.day)
        flag = f", {len(self.attention)} need attention" if self.attention else ""
        return f"TurboMode {self.kind} report, {span}: {sum(self.counts.values())} signals{flag}"

    @property
    def period_hit_rate(self) -> float | None:
        if self.resolved.empty:
            return None
        return float(self.resolved["correct"].astype(float).mean())

    def sections(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """(title, column names, rows) of every section, in order: what both renderings show."""
        out: list[tuple[str, list[str], list[list[str]]]] = []
        if self.kind == "retrain":
            out.append(("Retrain", ["field", "value"], _retrain_rows(self.retrain or {})))
            decisions = (self.retrain or {}).get("decisions") or {}
            out.append(
                (
                    "Gate decisions",
                    ["model", "decision", "rule"],
                    [[k, str(d.get("decision")), str(d.get("rule"))] for k, d in decisions.items()],
                )
            )
            return out
        out.append(
            (
                "Signals by cap class and side",
                ["cap class", "side", "signals"],
                [[c, s, str(n)] for (c, s), n in sorted(self.counts.items())],
            )
        )
        for (cap, side), group in _groups(self.signals):
            out.append(
                (
                    f"Top {cap} {side}",
                    list(SIGNAL_COLUMNS),
                    [[_cell(r[c]) for c in SIGNAL_COLUMNS] for r in group.to_dict("records")],
                )
            )
        rate = self.period_hit_rate
        out.append(
            (
                f"Outcomes resolved {self.start} to {self.day}: {len(self.resolved)}, hit rate "
                + ("—" if rate is None else f"{rate:.1%}"),
                [*OUTCOME_COLUMNS, "correct"],
                [
                    [*(_cell(r[c]) for c in OUTCOME_COLUMNS), "yes" if r["correct"] else "no"]
                    for r in self.resolved.to_dict("records")
                ],
            )
        )
        out.append(
            (
                f"Rolling hit rate, {self.window_days} days to {self.day}",
                ["horizon", "resolved", "hit rate"],
                [
                    [f"{h}d", str(int(r["n"])), "—" if r["n"] == 0 else f"{r['hit_rate']:.1%}"]
                    for h, r in self.rolling.iterrows()
                ],
            )
        )
        if self.wallets:
            out.append(
                (
                    "Paper wallets",
                    ["wallet", "as of", "equity", "P&L (period)", "P&L (total)", "open"],
                    [
                        [
                            w.name,
                            str(w.as_of or "—"),
                            f"{w.equity:,.2f}",
                            f"{w.period_pnl:+,.2f}",
                            f"{w.total_pnl:+,.2f}",
                            str(w.n_open),
                        ]
                        for w in self.wallets
                    ],
                )
            )
        model_rows = [["production models", str(self.production_models)]]
        model_rows += _retrain_rows(self.retrain) if self.retrain else [["last retrain", "none"]]
        out.append(("Models", ["", ""], model_rows))
        if self.drift:
            out.append(
                (
                    "Drift (20 trading days)",
                    ["model", "unusual features", "score PSI"],
                    [
                        [str(d["key"]), str(d.get("unusual_20d")), _cell(d.get("score_psi_20d"))]
                        for d in self.drift
                    ],
                )
            )
        out.append(
            (
                "Needs attention",
                ["part", "state", "detail", "fix"],
                [[c.part, c.state, c.detail, c.fix or ""] for c in self.attention],
            )
        )
        return out

    def text(self) -> str:
        lines = [self.subject, ""]
        for title, columns, rows in self.sections():
            lines.append(title)
            if not rows:
                lines += ["  (none)", ""]
                continue
            table = [columns, *rows] if any(columns) else rows
            widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
            for row in table:
                cells = (v.ljust(w) for v, w in zip(row, widths, strict=True))
                lines.append(("  " + "  ".join(cells)).rstrip())
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def html(self) -> str:
        e = html.escape
        parts = [
            "<!doctype html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{e(self.subject)}</title>",
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style>",
            f"</head><body><h1>{e(self.subject)}</h1>",
        ]
        for title, columns, rows in self.sections():
            parts.append(f"<h2>{e(title)}</h2>")
            if not rows:
                parts.append("<p>(none)</p>")
                continue
            head = "".join(f"<th>{e(c)}</th>" for c in columns) if any(columns) else ""
            body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in rows)
            parts.append(f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, pd.Timestamp):
        return str(value.date())
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _groups(signals: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    if signals.empty:
        return []
    return [((str(c), str(s)), g) for (c, s), g in signals.groupby(["cap_class", "side"])]


def _retrain_rows(run: dict[str, Any]) -> list[list[str]]:
    return [
        ["last retrain", f"run {run.get('id')}, {run.get('status')}"],
        ["finished", str(run.get("finished_at") or "—")],
        ["promoted", ", ".join(run.get("promoted") or []) or "none"],
        ["refused", ", ".join(run.get("refused") or []) or "none"],
    ]


# ---- building ----------------------------------------------------------------------------------


def build_report(settings: Settings, kind: str, day: date | None = None) -> Report:
    """The ``kind`` report on the scan of ``day`` (default: the newest scan; for ``retrain``,
    the last retrain run). Raises :class:`TurboModeError` when there is nothing to report."""
    if kind not in KINDS:
        raise TurboModeError(f"unknown report {kind!r}: one of {', '.join(KINDS)}")
    store = SignalStore(settings.stores.signals_url)
    try:
        if store.current_revision() is None:
            raise TurboModeError("the signals store has no tables yet: run `turbomode scan`")
        if kind == "retrain":
            return _retrain_report(store)
        return _scan_report(settings, store, kind, day)  # type: ignore[arg-type]
    finally:
        store.dispose()


def _last_retrain(store: SignalStore) -> dict[str, Any] | None:
    runs = store.retrain_runs()
    if runs.empty:
        return None
    last = runs.iloc[-1]
    report = last["report"] if isinstance(last["report"], dict) else {}
    finished = last["finished_at"]
    return {
        "id": int(last["id"]),
        "status": str(last["status"]),
        "finished_at": None if finished is None or finished != finished else str(finished),
        "promoted": list(report.get("promoted") or []),
        "refused": list(report.get("refused") or []),
        "decisions": dict(report.get("decisions") or {}),
    }


def _retrain_report(store: SignalStore) -> Report:
    run = _last_retrain(store)
    if run is None:
        raise TurboModeError("no retrain has run yet: nothing to report")
    day = pd.Timestamp(run["finished_at"]).date() if run["finished_at"] else date.today()
    return Report("retrain", day, day, retrain=run)


def _scan_report(settings: Settings, store: SignalStore, kind: Kind, day: date | None) -> Report:
    runs = store.runs()
    if runs.empty:
        raise TurboModeError("no scan recorded yet: run `turbomode scan`")
    dates = [pd.Timestamp(d).date() for d in runs["scan_date"]]
    day = day or dates[-1]
    if day not in dates:
        raise TurboModeError(f"no scan on {day}; the newest is {dates[-1]}")
    earlier = [d for d in dates if d < day]
    if kind == "weekly":
        start = day - timedelta(days=6)
    else:
        start = earlier[-1] + timedelta(days=1) if earlier else day

    history = store.signal_history(since=start)
    if kind == "daily":
        shown = history[history["scan_date"] == pd.Timestamp(day)]
    else:  # the week's fresh calls
        shown = history[history["scan_date"] == history["signal_date"]]
        shown = shown[shown["scan_date"] <= pd.Timestamp(day)]
    counts = {(str(c), str(s)): len(g) for (c, s), g in shown.groupby(["cap_class", "side"])}
    top = (
        shown.sort_values(["confidence", "symbol"], ascending=[False, True])
        .groupby(["cap_class", "side"], sort=True)
        .head(settings.notify.top_signals)
        .sort_values(["cap_class", "side", "confidence"], ascending=[True, True, False])
    )

    outcomes = store.outcomes()
    resolved = outcomes[outcomes["status"] == "resolved"] if len(outcomes) else outcomes
    if len(resolved):
        exit_day = pd.to_datetime(resolved["exit_date"])
        resolved = resolved[(exit_day >= pd.Timestamp(start)) & (exit_day <= pd.Timestamp(day))]
    window = settings.outcomes.hit_rate_window_days
    rolling = rolling_hit_rate(outcomes, day, window, settings.labels.horizons)

    run = store.run(day)
    drift = sorted(
        (run.summary.get("drift") if run else None) or [],
        key=lambda d: -(d.get("unusual_20d") or 0),
    )[:DRIFT_SHOWN]
    status = platform_status(settings)
    return Report(
        kind,
        day,
        start,
        signals=top.reset_index(drop=True),
        counts=counts,
        resolved=resolved.reset_index(drop=True),
        rolling=rolling,
        window_days=window,
        wallets=_wallets(store, start, day),
        production_models=sum(1 for m in status.models if m.version),
        retrain=_last_retrain(store),
        drift=drift,
        attention=status.problems,
    )


def _wallets(store: SignalStore, start: date, day: date) -> list[WalletLine]:
    """Each wallet's mark at ``day`` (its last on or before it) and its P&L since the mark
    before ``start`` (or since it was funded)."""
    lines = []
    for wallet in store.wallets():
        equity = store.wallet_equity(wallet.name)
        if len(equity):
            equity = equity[equity["date"] <= pd.Timestamp(day)]
        if equity.empty:
            lines.append(WalletLine(wallet.name, None, wallet.initial_cash, 0.0, 0.0, 0))
            continue
        last = equity.iloc[-1]
        before = equity[equity["date"] < pd.Timestamp(start)]
        base = float(before.iloc[-1]["equity"]) if len(before) else wallet.initial_cash
        lines.append(
            WalletLine(
                wallet.name,
                pd.Timestamp(last["date"]).date(),
                float(last["equity"]),
                float(last["equity"]) - base,
                float(last["equity"]) - wallet.initial_cash,
                int(last["n_open"]),
            )
        )
    return lines
