"""The Smart Scanner (issue #9): measured signal modifiers, adaptive tiers, fractional-Kelly
sizing under portfolio constraints, tiered exits at the close, and the SignalV2 report.

Everything here is pure: tables and records in, records out, no store and no clock.
"""

from turbomode.config import REGIMES, SmartSettings, Tier, TierCutoff
from turbomode.smart.exits import (
    DailyBarManager,
    ExitPlan,
    SmartEvent,
    SmartPosition,
    exit_plan,
    manage_smart_day,
    open_smart_position,
    run_bars,
)
from turbomode.smart.modifiers import (
    Evidence,
    ModifierRule,
    RuleSet,
    apply_modifiers,
    calibrate_rules,
    load_rules,
    measure_evidence,
)
from turbomode.smart.portfolio import Decision, Proposal, select, trailing_correlations
from turbomode.smart.scanner import SmartCandidate, earnings_soon, smart_scan
from turbomode.smart.sizing import Sizing, kelly_fraction, position_size, shares_for
from turbomode.smart.tiers import (
    Curation,
    SymbolRank,
    curate_universe,
    monthly_tiers,
    rank_tiers,
    tier_map,
)
from turbomode.smart.types import (
    Holding,
    SignalV2,
    SmartInputError,
    format_summary,
    read_signals_csv,
    read_signals_json,
    write_signals_csv,
    write_signals_json,
)

__all__ = [
    "REGIMES",
    "Curation",
    "DailyBarManager",
    "Decision",
    "Evidence",
    "ExitPlan",
    "Holding",
    "ModifierRule",
    "Proposal",
    "RuleSet",
    "SignalV2",
    "Sizing",
    "SmartCandidate",
    "SmartEvent",
    "SmartInputError",
    "SmartPosition",
    "SmartSettings",
    "SymbolRank",
    "Tier",
    "TierCutoff",
    "apply_modifiers",
    "calibrate_rules",
    "curate_universe",
    "earnings_soon",
    "exit_plan",
    "format_summary",
    "kelly_fraction",
    "load_rules",
    "manage_smart_day",
    "measure_evidence",
    "monthly_tiers",
    "open_smart_position",
    "position_size",
    "rank_tiers",
    "read_signals_csv",
    "read_signals_json",
    "run_bars",
    "select",
    "shares_for",
    "smart_scan",
    "tier_map",
    "trailing_correlations",
    "write_signals_csv",
    "write_signals_json",
]
