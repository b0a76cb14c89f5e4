"""Calendar features: known in advance, so they never leak (they read the date, not the data).

Business days are weekdays (numpy's busday calendar); exchange holidays are not subtracted,
which keeps the feature a pure function of the date rather than of which rows exist.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.features.indicators import Array
from turbomode.features.layout import Column, Layout
from turbomode.features.registry import feature

TEMPORAL: list[str] = [
    feature("day_of_week", "temporal", "Weekday, 0 = Monday … 4 = Friday."),
    feature("day_of_month", "temporal", "Calendar day of the month, 1–31."),
    feature("month", "temporal", "Calendar month, 1–12."),
    feature("week_of_year", "temporal", "ISO week number, 1–53."),
    feature("bdays_to_month_end", "temporal", "Weekdays after the date up to the month's end."),
    feature(
        "bdays_since_month_start", "temporal", "Weekdays from the month's start before the date."
    ),
    feature("bdays_to_quarter_end", "temporal", "Weekdays after the date up to the quarter's end."),
    feature("month_end_window", "temporal", "1 in the last two weekdays of a month, else 0."),
    feature("quarter_end_window", "temporal", "1 in the last five weekdays of a quarter, else 0."),
]


def calendar_features(dates: npt.NDArray[np.datetime64]) -> dict[str, Array]:
    """Calendar features of each date (one value per date)."""
    idx = pd.DatetimeIndex(dates)
    day = idx.normalize().to_numpy().astype("datetime64[D]")
    month_start = idx.to_period("M").start_time.to_numpy().astype("datetime64[D]")
    month_end = idx.to_period("M").end_time.normalize().to_numpy().astype("datetime64[D]")
    quarter_end = idx.to_period("Q").end_time.normalize().to_numpy().astype("datetime64[D]")
    one = np.timedelta64(1, "D")
    to_month_end = np.busday_count(day + one, month_end + one).astype(np.float64)
    to_quarter_end = np.busday_count(day + one, quarter_end + one).astype(np.float64)
    return {
        "day_of_week": idx.dayofweek.to_numpy(dtype=np.float64),
        "day_of_month": idx.day.to_numpy(dtype=np.float64),
        "month": idx.month.to_numpy(dtype=np.float64),
        "week_of_year": idx.isocalendar().week.to_numpy(dtype=np.float64),
        "bdays_to_month_end": to_month_end,
        "bdays_since_month_start": np.busday_count(month_start, day).astype(np.float64),
        "bdays_to_quarter_end": to_quarter_end,
        "month_end_window": (to_month_end <= 1).astype(np.float64),
        "quarter_end_window": (to_quarter_end <= 4).astype(np.float64),
    }


def temporal_features(layout: Layout) -> dict[str, Column]:
    """The temporal family, one value per date, as columns of ``layout``'s rows."""
    per_date = calendar_features(layout.dates)
    return {k: layout.per_date(v) for k, v in per_date.items()}
