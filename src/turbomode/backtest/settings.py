"""Settings of one backtest run: capital, costs, sizing and capacity.

The class lives with every other setting in :mod:`turbomode.config` (``Settings.backtest``);
it is re-exported here for the backtest package. The exit rules carry their own settings
(:class:`turbomode.config.RiskSettings` for the ATR rules, ``Settings.smart`` for the Smart
Scanner tiers).
"""

from turbomode.config import BacktestRuleSet as RuleSet
from turbomode.config import BacktestSettings

__all__ = ["BacktestSettings", "RuleSet"]
