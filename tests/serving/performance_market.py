"""A served market with a track record, for the performance pages: the serving tests' market
scanned every trading day of its last two months, two paper wallets (``paper`` on the ATR
rules, ``smart`` on the Smart rules) run through every day by ``turbomode wallet run``, and the
outcomes tracked by ``turbomode outcomes track`` — the commands production runs, on the same
store the service reads.

The tiny test models' confidences (about 0.25–0.45, strength 25–45) are below the Smart rules'
default regime entry thresholds (45–65), so this market's settings lower them to 20: the Smart
wallet then trades, and its trades carry the tier and regime the what-if filters select on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from tests.serving.builder import ServedMarket, build_market
from turbomode.cli.main import app
from turbomode.config import Regime
from turbomode.store import SignalStore

SCAN_OFFSETS = tuple(range(0, 60))  # calendar days before the newest bar: every trading day
LOW_THRESHOLD = 20.0


def _cli(market: ServedMarket, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(market.config_file), *args])
    assert result.exit_code == 0, result.output
    return result.output


def build_performance_market(root: Path) -> ServedMarket:
    """Build it under ``root`` (see the module notes)."""
    market = build_market(root, scan_offsets=SCAN_OFFSETS)
    regime = market.settings.regime.model_copy(
        update={"base_threshold": LOW_THRESHOLD, "thresholds": dict.fromkeys(Regime, LOW_THRESHOLD)}
    )
    market.settings = market.settings.model_copy(update={"regime": regime})
    market.config_file.write_text(
        yaml.safe_dump(market.settings.model_dump(mode="json"), sort_keys=False)
    )
    store = SignalStore(market.settings.stores.signals_url)
    scans = sorted(pd.to_datetime(store.runs()["scan_date"]).dt.date)
    store.dispose()
    prices = pd.read_parquet(market.settings.data.clean_dir / "prices.parquet", columns=["date"])
    days = sorted(pd.to_datetime(prices["date"]).dt.date.unique())
    first = next(d for d in days if d > scans[0])
    for name, rules in (("paper", "atr"), ("smart", "smart")):
        _cli(market, "wallet", "create", name, "--rules", rules)
        _cli(market, "wallet", "run", name, "--date", str(first))
        _cli(market, "wallet", "run", name, "--date", str(days[-1]))
    _cli(market, "outcomes", "track", "--date", str(days[-1]))
    return market
