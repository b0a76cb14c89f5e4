"""Kelly inputs fall back from the symbol's own closed trades to its tier's, to all, to none."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from tests.smart.test_run import series
from turbomode.config import SmartSettings, Tier
from turbomode.smart.kelly import NO_EVIDENCE, kelly_inputs
from turbomode.smart.state import TierState
from turbomode.smart.tiers import SymbolRank

D = date.fromisoformat


def test_kelly_falls_back_from_symbol_to_tier_to_all_to_none() -> None:
    s = SmartSettings(tier_min_trades=4)
    trades = pd.DataFrame(
        series("OWN", "2024-03-04", [0.03, 0.03, 0.03, -0.01])
        + series("PEER", "2024-03-04", [0.02, 0.02, -0.02, -0.02, 0.02])
        + series("LONE", "2024-03-04", [0.04, -0.01]),
        columns=["symbol", "signal_date", "exit_date", "return"],
    )
    ranks = {
        "PEER": SymbolRank("PEER", Tier.STRONG, 5, 0.6, 0.004, 1.0, "x"),
        "NEWS": SymbolRank("NEWS", Tier.STRONG, 0, 0.5, 0.0, 1.0, "x"),
        "WEAK": SymbolRank("WEAK", Tier.WEAK, 0, 0.5, 0.0, 1.0, "x"),
    }
    tiers = TierState(as_of=D("2024-06-01"), horizon=5, ranks=ranks)
    got = kelly_inputs(trades, D("2024-06-10"), ["OWN", "NEWS", "WEAK"], tiers, s)
    assert got["OWN"].source == "symbol" and got["OWN"].win_rate == pytest.approx(0.75)
    assert got["OWN"].payoff == pytest.approx(3.0)
    # NEWS has no trades: its tier's (Strong: PEER's) pooled trades
    assert (got["NEWS"].source, got["NEWS"].n) == ("tier Strong", 5)
    assert got["NEWS"].win_rate == pytest.approx(0.6)
    # WEAK: no Weak trades at all → every trade (OWN 4 + PEER 5 + LONE 2)
    assert (got["WEAK"].source, got["WEAK"].n) == ("all", 11)
    assert kelly_inputs(trades.iloc[0:0], D("2024-06-10"), ["OWN"], tiers, s) == {
        "OWN": NO_EVIDENCE
    }
