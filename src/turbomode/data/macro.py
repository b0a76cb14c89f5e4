"""Macro series as they were known on each day: the vintage table every macro source returns,
its validation, and its place in the clean store.

One row per published value: ``series`` (the role the features read — curve, claims, money,
manufacturing), ``source_id`` (the series at its source, e.g. FRED's ``T10Y2Y``), ``date``
(the observation period in FRED's convention: a month is dated by its first day, a week by its
last), ``realtime_start`` (the first day the value was public) and ``value``. A revision is a
later row of the same (series, date); a value withdrawn by a later vintage is a row whose value
is NaN. So what was known of an observation on day t is its row with the latest
``realtime_start`` ≤ t — the one rule :mod:`turbomode.features.macro` applies.

Macro series are where look-ahead hides most easily (published weeks after the period, revised
afterwards), which is why a value is dated by its release, never by its period.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode.config import MACRO_ROLES
from turbomode.data.schema import require_columns
from turbomode.io import atomic_write_json, atomic_write_parquet

MACRO_COLUMNS: tuple[str, ...] = ("series", "source_id", "date", "realtime_start", "value")
MACRO_KEY: list[str] = ["series", "date", "realtime_start"]
MACRO_FILE = "macro.parquet"
MACRO_REPORT = "macro_report.json"


def empty_macro() -> pd.DataFrame:
    """An empty vintage table with the canonical dtypes."""
    return pd.DataFrame(
        {
            "series": pd.Series(dtype=object),
            "source_id": pd.Series(dtype=object),
            "date": pd.Series(dtype="datetime64[ns]"),
            "realtime_start": pd.Series(dtype="datetime64[ns]"),
            "value": pd.Series(dtype="float64"),
        }
    )


def dated_by_release_lag(frame: pd.DataFrame, lags: Mapping[str, int]) -> pd.DataFrame:
    """Final values without vintages: each value is taken as first published ``lags[series]``
    days after its observation date (the documented release lag), never earlier."""
    missing = sorted(set(frame["series"]) - set(lags))
    if missing:
        raise ValueError(f"no release lag for macro series {missing}")
    days = frame["series"].map(lags).astype("int64").to_numpy()
    out = frame.copy()
    out["realtime_start"] = pd.to_datetime(out["date"]) + pd.to_timedelta(days, unit="D")
    return out


@dataclass
class MacroValidation:
    """Clean vintage rows and the rows set aside, each with the first rule it breaks."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int

    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.quarantine["rule"].value_counts().items()}


def validate_macro(frame: pd.DataFrame) -> MacroValidation:
    """Rules, each row charged to the first it breaks: ``unparseable`` (date, release date or
    value), ``unknown_series`` (not a macro role), ``non_finite`` (±inf; NaN is a withdrawal
    and passes), ``released_before_period`` (a value public before the period it describes
    began: a dating error that would leak), ``duplicate_conflict`` (two values for one
    series, date and release; an exact copy keeps one row)."""
    require_columns(frame, MACRO_COLUMNS, "macro frame")
    raw = frame[list(MACRO_COLUMNS)].reset_index(drop=True)
    f = pd.DataFrame(
        {
            "series": raw["series"].astype(str).str.strip(),
            "source_id": raw["source_id"].astype(str).str.strip(),
            "date": pd.to_datetime(raw["date"], errors="coerce").astype("datetime64[ns]"),
            "realtime_start": pd.to_datetime(raw["realtime_start"], errors="coerce").astype(
                "datetime64[ns]"
            ),
            "value": pd.to_numeric(raw["value"], errors="coerce").astype("float64"),
        }
    )
    rule = pd.Series("", index=f.index, dtype=object)

    def charge(mask: pd.Series | np.ndarray, name: str) -> None:
        hit = np.asarray(mask, dtype=bool) & (rule == "").to_numpy()
        rule[hit] = name

    bad_value = f["value"].isna() & raw["value"].notna() & (raw["value"].astype(str) != "nan")
    charge(f["date"].isna() | f["realtime_start"].isna() | bad_value, "unparseable")
    charge(~f["series"].isin(MACRO_ROLES), "unknown_series")
    charge(np.isinf(f["value"].to_numpy()), "non_finite")
    charge(f["realtime_start"] < f["date"], "released_before_period")
    exact = f.duplicated(keep="first") & (rule == "")
    alive = ~exact & (rule == "")
    keyed = f[alive].duplicated(MACRO_KEY, keep=False).reindex(f.index, fill_value=False)
    charge(keyed, "duplicate_conflict")
    ok = (rule == "") & ~exact
    clean = f[ok].sort_values(MACRO_KEY, kind="stable").reset_index(drop=True)
    quarantine = pd.DataFrame(
        {
            "series": f.loc[rule != "", "series"],
            "date": raw.loc[rule != "", "date"].astype(str),
            "realtime_start": raw.loc[rule != "", "realtime_start"].astype(str),
            "rule": rule[rule != ""],
            "value": raw.loc[rule != "", "value"].astype(str),
        }
    ).reset_index(drop=True)
    return MacroValidation(clean, quarantine, len(frame))


@dataclass
class MacroReport:
    """What one macro step did: for the console, ``macro_report.json`` and the ingest report."""

    source: str
    validation: MacroValidation | None = None
    error: str | None = None
    """Why the series could not be refreshed (the stored ones, if any, were kept)."""
    action: str = "written"
    """written, kept (a refresh failed or nothing to do), removed or none."""
    paths: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "action": self.action}
        if self.error:
            out["error"] = self.error
        v = self.validation
        if v is not None:
            out.update(
                rows_in=v.rows_in,
                rows_clean=len(v.clean),
                rows_quarantined=len(v.quarantine),
                rules=v.counts(),
                quarantined=v.quarantine.head(20).to_dict(orient="records"),
                series=series_summary(v.clean),
            )
        out["paths"] = self.paths
        out["seconds"] = round(self.seconds, 3)
        return out


def series_summary(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per role: the source id, observations, vintage rows, first and last period, newest
    release."""
    out: dict[str, dict[str, Any]] = {}
    for role, g in frame.groupby("series", sort=True):
        out[str(role)] = {
            "source_id": str(g["source_id"].iloc[-1]),
            "observations": int(g["date"].nunique()),
            "rows": len(g),
            "first_date": str(g["date"].min().date()),
            "last_date": str(g["date"].max().date()),
            "newest_release": str(g["realtime_start"].max().date()),
        }
    return out


def write_macro(report: MacroReport, directory: Path) -> dict[str, str]:
    """Write the clean vintage table and its report, each atomically; the report records the
    source, which the next market ingest reads (:func:`stored_macro_source`)."""
    if report.validation is None:
        raise ValueError("nothing to write: the macro report holds no validated rows")
    paths = {"macro": directory / MACRO_FILE, "macro_report": directory / MACRO_REPORT}
    atomic_write_parquet(report.validation.clean, paths["macro"])
    report.paths = {k: str(v) for k, v in paths.items()}
    atomic_write_json(report.summary(), paths["macro_report"])
    return report.paths


def read_macro(directory: Path) -> pd.DataFrame | None:
    """The stored vintage table, or None when the clean store holds no macro series."""
    path = directory / MACRO_FILE
    return pd.read_parquet(path) if path.exists() else None


def stored_macro_source(directory: Path) -> str | None:
    """The source the stored macro series came from (None: none stored)."""
    path = directory / MACRO_REPORT
    if not (directory / MACRO_FILE).exists():
        return None
    try:
        return str(json.loads(path.read_text())["source"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def remove_macro(directory: Path) -> bool:
    """Drop the stored macro series (and report); whether there were any."""
    had = (directory / MACRO_FILE).exists()
    for name in (MACRO_FILE, MACRO_REPORT):
        (directory / name).unlink(missing_ok=True)
    return had
