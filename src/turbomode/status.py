"""The platform's state at a glance: how far each store has got, what is in production, what
the feedback loop is waiting for, when each job runs next, and what is missing, stale or
failing.

One function computes it (:func:`platform_status`) for ``turbomode status`` and the
dashboard's overview alike. It only reads: a fresh data directory gets every part reported
missing, nothing created. Stores are compared with each other, not with the calendar — a
historical data set (the synthetic market, a replay) is not stale for being old.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from turbomode.errors import TurboModeError
from turbomode.jobs import JOBS

if TYPE_CHECKING:
    from turbomode.config import Settings

State = Literal["ok", "missing", "stale", "failing"]
# The states that make ``turbomode status`` exit non-zero.
PROBLEMS: frozenset[str] = frozenset({"missing", "stale", "failing"})


@dataclass(frozen=True)
class Check:
    """One part of the platform: its state, a sentence on it, and the command that fixes it."""

    part: str
    state: State
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class ProductionModel:
    """A (sector, horizon) key's production version and how it was judged out of time."""

    key: str
    version: str | None
    registered: str | None
    age_days: float | None
    oot_rank_ic: float | None
    gate: str | None


@dataclass(frozen=True)
class NextRun:
    job: str
    cron: str
    next_run: str | None


@dataclass
class PlatformStatus:
    data_dir: str
    checked_at: str
    clean_last_bar: str | None = None
    offline_last_bar: str | None = None
    online_last_bar: str | None = None
    last_scan: str | None = None
    last_scan_signals: int | None = None
    models: list[ProductionModel] = field(default_factory=list)
    last_retrain: dict[str, Any] | None = None
    pending_outcomes: int | None = None
    schedules: list[NextRun] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.state in PROBLEMS]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def platform_status(settings: Settings, now: datetime | None = None) -> PlatformStatus:
    """Everything :class:`PlatformStatus` holds, read from the stores ``settings`` name."""
    from turbomode.feature_store import MANIFEST as BUILD_MANIFEST
    from turbomode.workspace import Workspace

    now = now or datetime.now(UTC)
    work = Workspace.of(settings)
    status = PlatformStatus(str(Path(work.data_dir).resolve()), now.isoformat(timespec="seconds"))
    add = status.checks.append

    clean = work.clean_dir / "prices.parquet"
    status.clean_last_bar = _last_date(clean, "date")
    if status.clean_last_bar is None:
        add(Check("clean store", "missing", f"no market data at {clean}", "turbomode ingest"))
    else:
        add(Check("clean store", "ok", f"newest bar {status.clean_last_bar}"))

    status.offline_last_bar = _manifest_date(work.offline_dir / BUILD_MANIFEST)
    add(
        _behind(
            "features",
            status.offline_last_bar,
            status.clean_last_bar,
            "the clean store",
            "turbomode features build",
        )
    )

    status.online_last_bar = _online_date(settings) if status.offline_last_bar else None
    add(
        _behind(
            "online store",
            status.online_last_bar,
            status.offline_last_bar,
            "the offline features",
            "turbomode features materialize",
        )
    )

    scan = _read_json(work.latest_scan)
    if scan is not None:
        status.last_scan = str(scan.get("scan_date"))
        status.last_scan_signals = len(scan.get("signals", []))
    add(
        _behind(
            "last scan",
            status.last_scan,
            status.online_last_bar,
            "the online store",
            "turbomode scan",
            label="scan of",
        )
    )

    status.models = _production_models(settings, now)
    live = [m for m in status.models if m.version]
    if not live:
        add(Check("models", "missing", "no production model", "turbomode train"))
    else:
        idle = len(status.models) - len(live)
        note = f"; {idle} key(s) without one (the gate refused them)" if idle else ""
        add(Check("models", "ok", f"{len(live)} production model(s){note}"))

    _feedback_loop(settings, status)
    status.schedules = next_runs(settings, now)
    return status


def _behind(
    part: str,
    last: str | None,
    upstream: str | None,
    what: str,
    fix: str,
    label: str = "newest bar",
) -> Check:
    """``part`` is missing, behind ``upstream`` (stale), or level with it."""
    if last is None:
        return Check(part, "missing", f"no {part} yet", fix)
    if upstream is not None and last < upstream:
        return Check(part, "stale", f"{label} {last}, behind {what} ({upstream})", fix)
    return Check(part, "ok", f"{label} {last}")


def _last_date(path: Path, column: str) -> str | None:
    """The newest value of a date column of a parquet file (or dataset), as YYYY-MM-DD."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    newest = pc.max(pq.read_table(path, columns=[column]).column(column)).as_py()
    return None if newest is None else str(newest)[:10]


def _manifest_date(path: Path) -> str | None:
    doc = _read_json(path)
    return None if doc is None else str(doc.get("last_date"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TurboModeError(f"unreadable {path}: {exc}") from exc


def _online_date(settings: Settings) -> str | None:
    """The newest market day the online store serves (what materialization last loaded)."""
    from turbomode.feature_store import VECTOR_VIEW, open_store, vector_date

    try:
        view = open_store(settings).get_feature_view(VECTOR_VIEW)
    except Exception:  # Feast raises its own not-found types: nothing applied yet
        return None
    end = view.most_recent_end_time
    if end is None:
        return None
    # Materialization runs to one second past the newest bar's timestamp.
    day = vector_date(end - timedelta(seconds=1))
    return None if day is None else day.isoformat()


def _production_models(settings: Settings, now: datetime) -> list[ProductionModel]:
    from turbomode.models.registry import ModelRegistry

    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    models = []
    for key in registry.list_keys():
        version = registry.production(key)
        if version is None:
            models.append(ProductionModel(key, None, None, None, None, None))
            continue
        meta = registry.manifest(key, version)
        registered = meta.get("registered_at")
        age = None
        if registered:
            stamp = datetime.fromisoformat(str(registered))
            stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
            age = round((now - stamp).total_seconds() / 86400, 1)
        ensemble = (meta.get("metrics") or {}).get("ensemble") or {}
        ic = (ensemble.get("rank_ic") or {}).get("mean_ic")
        gate = (meta.get("gate") or {}).get("decision")
        models.append(ProductionModel(key, version, registered, age, ic, gate))
    return models


def _feedback_loop(settings: Settings, status: PlatformStatus) -> None:
    """Pending outcomes and the last retrain, from the signals store (when there is one)."""
    from sqlalchemy.engine import make_url

    from turbomode.store import SignalStore

    url = make_url(settings.stores.signals_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        status.checks.append(
            Check(
                "signals store", "missing", f"no signals store at {url.database}", "turbomode scan"
            )
        )
        return
    store = SignalStore(settings.stores.signals_url)
    try:
        if store.current_revision() is None:
            status.checks.append(
                Check(
                    "signals store",
                    "missing",
                    "the signals store has no tables yet",
                    "turbomode scan",
                )
            )
            return
        status.pending_outcomes = len(store.outcomes("pending"))
        runs = store.retrain_runs()
    finally:
        store.dispose()
    status.checks.append(
        Check("outcomes", "ok", f"{status.pending_outcomes} signal(s) waiting for their outcome")
    )
    if runs.empty:
        return
    last = runs.iloc[-1]
    finished = last["finished_at"]
    status.last_retrain = {
        "id": int(last["id"]),
        "status": str(last["status"]),
        "finished_at": None if finished is None or finished != finished else str(finished),
    }
    if last["status"] == "failed":
        status.checks.append(
            Check(
                "retrain", "failing", f"retrain run {int(last['id'])} failed", "turbomode retrain"
            )
        )
    else:
        status.checks.append(Check("retrain", "ok", f"last retrain: {last['status']}"))


# ---- schedules ---------------------------------------------------------------------------

_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _cron_field(text: str, low: int, high: int) -> set[int]:
    """One field of a five-field cron expression: ``*``, ``a``, ``a-b``, lists, ``/step``."""
    values: set[int] = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(v) for v in span.split("-", 1))
        else:
            first = last = int(span)
        if step and span != "*" and "-" not in span:
            last = high
        values.update(range(first, last + 1, int(step) if step else 1))
    if not values or min(values) < low or max(values) > high + (1 if high == 6 else 0):
        raise ValueError(f"cron field {text!r} is outside {low}-{high}")
    return {0 if high == 6 and v == 7 else v for v in values}


def next_cron(expression: str, after: datetime, tz: str) -> datetime | None:
    """The first time strictly after ``after`` that the cron ``expression`` fires in ``tz``
    (None when it never fires within five years). Day of month and day of week combine as
    cron does: either matches when both are restricted."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"cron expression {expression!r} needs five fields")
    minutes, hours, days, months, weekdays = (
        sorted(_cron_field(p, lo, hi)) for p, (lo, hi) in zip(parts, _FIELDS, strict=True)
    )
    any_day, any_weekday = parts[2] == "*", parts[4] == "*"
    zone = ZoneInfo(tz)
    start = after.astimezone(zone)
    day = start.date()
    for _ in range(5 * 366):
        cron_weekday = (day.weekday() + 1) % 7  # cron: 0 is Sunday
        by_day, by_weekday = day.day in days, cron_weekday in weekdays
        both = any_day or any_weekday
        matches = (by_day and by_weekday) if both else (by_day or by_weekday)
        if day.month in months and matches:
            for hour in hours:
                for minute in minutes:
                    at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    if at > start:
                        return at
        day += timedelta(days=1)
    return None


def next_runs(settings: Settings, now: datetime) -> list[NextRun]:
    """The next run of every scheduled job (the chart's CronWorkflows run on these)."""
    schedules = settings.schedules
    out = []
    for job in JOBS:
        cron = getattr(schedules, job)
        when = next_cron(cron, now, schedules.timezone)
        out.append(NextRun(job, cron, when.isoformat(timespec="minutes") if when else None))
    return out
