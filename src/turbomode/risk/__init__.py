"""Risk management of the nightly scan: adaptive stop/target levels and position management.

The position records it manages live in :mod:`turbomode.records.positions`.
"""

from turbomode.risk.levels import (
    Levels,
    RiskInputError,
    confidence_modifier,
    levels,
    levels_arrays,
    levels_at,
    levels_frame,
    stop_distance,
)
from turbomode.risk.positions import (
    entry_skip_reason,
    manage_day,
    open_position,
    record_signal,
    record_signal_event,
    replay,
    should_exit_on_signal,
    signal_exit,
)

__all__ = [
    "Levels",
    "RiskInputError",
    "confidence_modifier",
    "entry_skip_reason",
    "levels",
    "levels_arrays",
    "levels_at",
    "levels_frame",
    "manage_day",
    "open_position",
    "record_signal",
    "record_signal_event",
    "replay",
    "should_exit_on_signal",
    "signal_exit",
    "stop_distance",
]
