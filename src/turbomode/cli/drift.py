"""``turbomode drift``: each production model's feature and score drift on a date — a thin
adapter over :func:`turbomode.signals.drift.drift_on`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from turbomode.cli.common import console, handles_errors, parse_day, print_frame, settings_from


@handles_errors
def drift_command(
    ctx: typer.Context,
    date: Annotated[
        str | None, typer.Option("--date", help="Date, YYYY-MM-DD (default: newest bar).")
    ] = None,
    window: Annotated[
        str, typer.Option("--window", help="tonight (the day's cross-section) or 20d.")
    ] = "20d",
    key: Annotated[
        str | None, typer.Option("--key", help="One model key (e.g. 'Energy/5d'): every feature.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """PSI of each production model's features and scores against its training window:
    features over 0.1 (moderate) and 0.25 (major), the score's PSI and the worst features."""
    from turbomode.models.drift import WINDOWS
    from turbomode.signals.drift import drift_on, table

    if window not in WINDOWS:
        raise ValueError(f"--window must be one of {', '.join(WINDOWS)}, got {window!r}")
    day, drifts = drift_on(settings_from(ctx), parse_day(date))
    if key is not None:
        chosen = [d for d in drifts if d.key == key]
        if not chosen:
            known = ", ".join(d.key for d in drifts) or "none (run `turbomode train`)"
            raise ValueError(f"no production model with drift for {key!r}; known: {known}")
        d = chosen[0]
        rows = d.table[d.table["window"] == window].sort_values("psi", ascending=False)
        if as_json:
            print(rows.to_json(orient="records"))
            return
        print_frame(rows, f"{d.key} ({d.version}) on {day}, window {window}")
        console.print(f"score PSI: {d.score.get(window, float('nan')):.3f}")
        return
    frame = table(drifts, window)
    if as_json:
        models = json.loads(frame.to_json(orient="records")) if len(frame) else []
        print(json.dumps({"date": str(day), "window": window, "models": models}))
        return
    if frame.empty:
        console.print("no production model has a drift reference: train one (`turbomode train`)")
        return
    print_frame(frame, f"drift on {day}, window {window} (PSI > 0.1 moderate, > 0.25 major)")
