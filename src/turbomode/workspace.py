"""The one place that knows where files and stores live.

Every path TurboMode reads or writes hangs under ``settings.data.data_dir``: the clean store,
Feast's offline tables and local online store, scans, reports, the Smart Scanner's state,
backtests, replays, tuning results, and — unless set explicitly — the signals store
(``sqlite:///<data_dir>/signals.db``), the model registry (``<data_dir>/models``) and the
yfinance and FRED caches. So ``--data-dir D`` (or ``TURBOMODE_DATA__DATA_DIR``) moves all of
it, from any working directory.

A store setting counts as "not set explicitly" while it still holds its default value (the
defaults are written relative to ``./data``); :func:`rebase` rewrites exactly those under the
current data directory. Settings are rebased when built, and again when a command moves the
data directory (:func:`with_data_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from turbomode.config import Settings

DEFAULT_DATA_DIR = Path("data")
DEFAULT_SIGNALS_URL = "sqlite:///data/signals.db"
DEFAULT_MODEL_REGISTRY_URI = "data/models"
DEFAULT_YFINANCE_CACHE = Path("data/cache/yfinance")
DEFAULT_FRED_CACHE = Path("data/cache/fred")


def sqlite_url(path: Path) -> str:
    """``sqlite:///relative`` or ``sqlite:////absolute`` for a file path."""
    return f"sqlite:///{path.as_posix()}"


def _derived(data_dir: Path) -> tuple[str, str, Path, Path]:
    return (
        sqlite_url(data_dir / "signals.db"),
        (data_dir / "models").as_posix(),
        data_dir / "cache" / "yfinance",
        data_dir / "cache" / "fred",
    )


def rebase(settings: Settings, previous: Path = DEFAULT_DATA_DIR) -> Settings:
    """Point every store setting still at its default (or at the default derived from
    ``previous``) under ``settings.data.data_dir``, in place; returns ``settings``."""
    data_dir = Path(settings.data.data_dir)
    old = {_derived(DEFAULT_DATA_DIR), _derived(Path(previous))}
    signals, registry, cache, fred_cache = _derived(data_dir)
    stores, yf, fred = settings.stores, settings.yfinance, settings.fred
    if stores.signals_url in {o[0] for o in old}:
        stores.signals_url = signals
    if stores.model_registry_uri in {o[1] for o in old}:
        stores.model_registry_uri = registry
    if Path(yf.cache_dir) in {o[2] for o in old}:
        yf.cache_dir = cache
    if Path(fred.cache_dir) in {o[3] for o in old}:
        fred.cache_dir = fred_cache
    return settings


def with_data_dir(settings: Settings, data_dir: Path | str | None) -> Settings:
    """Move the data directory (``--data-dir``) and everything derived from it, in place."""
    if data_dir is None:
        return settings
    previous = Path(settings.data.data_dir)
    settings.data.data_dir = Path(data_dir)
    return rebase(settings, previous)


@dataclass(frozen=True)
class Workspace:
    """Every path under the data directory, and the store locations, from settings."""

    data_dir: Path
    signals_url: str
    model_registry_uri: str

    @classmethod
    def of(cls, settings: Settings) -> Workspace:
        return cls(
            data_dir=Path(settings.data.data_dir),
            signals_url=settings.stores.signals_url,
            model_registry_uri=settings.stores.model_registry_uri,
        )

    @property
    def clean_dir(self) -> Path:
        return self.data_dir / "clean"

    @property
    def feast_dir(self) -> Path:
        return (self.data_dir / "feast").resolve()

    @property
    def offline_dir(self) -> Path:
        return self.feast_dir / "offline"

    @property
    def scans_dir(self) -> Path:
        return self.data_dir / "scans"

    @property
    def latest_scan(self) -> Path:
        return self.scans_dir / "latest_scan.json"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def smart_dir(self) -> Path:
        return self.data_dir / "smart"

    @property
    def backtests_dir(self) -> Path:
        return self.data_dir / "backtests"

    @property
    def replays_dir(self) -> Path:
        return self.data_dir / "replays"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def tuning_dir(self) -> Path:
        return self.data_dir / "tuning"

    @property
    def kfp_dir(self) -> Path:
        return self.data_dir / "kfp"

    @property
    def wallet_dir(self) -> Path:
        return self.data_dir / "wallet"
