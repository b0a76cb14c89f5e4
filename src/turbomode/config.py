"""One typed settings object for the whole platform.

Defaults give the embedded local set-up (synthetic data, SQLite, DuckDB, Ray local).
Environment variables ``TURBOMODE_<SECTION>__<FIELD>`` and a YAML file (``TURBOMODE_CONFIG``
or ``--config``) override them; the Helm chart renders its values from the same object, so a
schedule or threshold lives in exactly one place.
"""

from __future__ import annotations

import os
from collections.abc import Container
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

Horizon = Literal[1, 2, 5]
TierName = Literal["Elite", "Strong", "Average", "Weak", "Avoid"]
DEFAULT_HORIZONS: tuple[Horizon, ...] = (1, 2, 5)

GICS_SECTORS: tuple[str, ...] = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)

# SPDR sector ETF for each GICS sector: the market-context features compare a stock to it.
SECTOR_ETFS: dict[str, str] = {
    "Communication Services": "XLC",
    "Consumer Discretionary": "XLY",
    "Consumer Staples": "XLP",
    "Energy": "XLE",
    "Financials": "XLF",
    "Health Care": "XLV",
    "Industrials": "XLI",
    "Information Technology": "XLK",
    "Materials": "XLB",
    "Real Estate": "XLRE",
    "Utilities": "XLU",
}
MARKET_SYMBOLS: tuple[str, ...] = ("SPY", "^VIX", "QQQ", "IWM", *SECTOR_ETFS.values())


class DataSettings(BaseModel):
    """Where data comes from and where the clean store lives."""

    source: Literal["synthetic", "parquet", "csv", "yfinance"] = "synthetic"
    source_path: Path | None = Field(
        default=None, description="File or directory for the parquet/csv source."
    )
    constituents_path: Path | None = Field(
        default=None, description="Constituents CSV (symbol, sector, ...); default: beside prices."
    )
    membership_path: Path | None = Field(
        default=None, description="Membership intervals CSV (symbol, start_date, end_date)."
    )
    data_dir: Path = Field(default=Path("data"), description="Root of every local store.")

    @property
    def clean_dir(self) -> Path:
        return self.data_dir / "clean"


class SyntheticSettings(BaseModel):
    """The seeded synthetic market: realistic enough to exercise every stage, with a planted
    short-term reversal whose strength is known, so the pipeline can be checked against truth."""

    seed: int = 7
    n_symbols: int = Field(default=80, ge=11)
    n_days: int = Field(default=1512, ge=300, description="Trading days (1512 ≈ 6 years).")
    start: str = "2018-01-02"
    signal_strength: float = Field(
        default=0.20,
        ge=0.0,
        lt=1.0,
        description="AR(1) coefficient of the planted short-term reversal in each stock's "
        "idiosyncratic return (see turbomode.data.sources.synthetic). 0 plants none.",
    )


class ValidationSettings(BaseModel):
    """Bounds for the validation rules that every load goes through."""

    max_abs_log_return: float | None = Field(
        default=1.0,
        gt=0,
        description="Quarantine a row whose close moved more than this (absolute log return) "
        "from the last good close. 1.0 (≈ +172 % or −63 %) catches decimal errors and unadjusted "
        "splits of 3:1 or more while real crashes of S&P 500 stocks (−50 to −60 % in 2008 and "
        "March 2020) pass; tighten it for noisier sources. None turns the rule off.",
    )
    ohlc_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="Relative slack before open/close outside [low, high] counts as bad.",
    )
    flag_zero_volume: bool = True


class UniverseSettings(BaseModel):
    """Cap-class boundaries (USD) and optional symbol tiers."""

    large_cap_min: float = 100e9
    mid_cap_min: float = 20e9
    tiers: dict[str, TierName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> UniverseSettings:
        if self.mid_cap_min >= self.large_cap_min:
            raise ValueError(
                f"mid_cap_min ({self.mid_cap_min:g}) must be below large_cap_min "
                f"({self.large_cap_min:g})"
            )
        return self


class LabelSettings(BaseModel):
    """Horizons and the 3-class label rule."""

    horizons: list[Horizon] = Field(default_factory=lambda: list(DEFAULT_HORIZONS))
    mode: Literal["atr", "fixed"] = "atr"
    relative_to: Literal["none", "sector"] = Field(
        default="sector",
        description=(
            "sector: the label compares the forward return minus the equal-weighted mean of "
            "its sector that day (what the stock adds beyond its sector); none: the raw return."
        ),
    )
    atr_multiple: dict[int, float] = Field(
        default_factory=lambda: {1: 0.25, 2: 0.35, 5: 0.5},
        description="mode=atr: BUY when the forward return ≥ k × ATR% (SELL ≤ −k × ATR%).",
    )
    fixed_threshold: dict[int, float] = Field(
        default_factory=lambda: {1: 0.10, 2: 0.10, 5: 0.10},
        description="mode=fixed (the legacy rule): BUY at ≥ +10 %, SELL at ≤ −10 %.",
    )

    @field_validator("horizons")
    @classmethod
    def _sorted_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one horizon is required")
        return sorted(set(v))


class SignalSettings(BaseModel):
    """Signal rules; the legacy system's values are the defaults until measured otherwise."""

    entry_probability: float = Field(default=0.60, gt=0, lt=1)
    exit_probability: float = Field(default=0.70, gt=0, lt=1)
    persistence: int = Field(default=3, ge=1)
    entry_range: float = Field(default=0.03, ge=0)
    decay_days: float = Field(default=14.0, gt=0)
    decay_factor: float = Field(default=0.3, ge=0, le=1)
    capacity_per_class_side: int = Field(default=20, ge=1)
    shorts_enabled: bool = True
    threshold_mode: Literal["fixed", "quantile"] = Field(
        default="quantile",
        description=(
            "quantile (default): entry at the top threshold_quantile of tonight's lifts — "
            "P(BUY) or P(SELL) over the model's class prior, comparable across horizons, "
            "sectors and model kinds — never below threshold_floor_lift (and P(side) never "
            "below threshold_floor); fixed (the legacy profile): P(side) ≥ entry_probability. "
            "On real data the models' P(BUY) reaches 0.60 on no night "
            "(benchmarks/measure_signal_rules.py), so fixed 0.60 issues no signals."
        ),
    )
    threshold_quantile: float = Field(default=0.95, gt=0, lt=1)
    threshold_floor: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="quantile mode: an absolute floor on P(side) (0: none but the lift floor).",
    )
    threshold_floor_lift: float = Field(
        default=1.0,
        ge=0,
        description=(
            "quantile mode: the lowest lift that enters — 1.0: the model rates the side at "
            "least as likely as its base rate in the training rows. Calibrated probabilities "
            "of a weak signal stay near the prior, so an absolute floor such as the old 0.40 "
            "silences them; the stacked ensemble's balanced classes make its prior 1/3, where "
            "1.2 reproduces the old 0.40 floor."
        ),
    )


class RiskSettings(BaseModel):
    """Adaptive stop and target: stop distance = ATR(14) × sector × confidence × horizon
    multipliers; target = stop distance × ``reward_risk``; partial exits at 1R, 2R, 3R."""

    sector_multiplier: dict[str, float] = Field(
        default_factory=lambda: {
            "Information Technology": 1.3,
            "Financials": 1.1,
            "Health Care": 1.1,
            "Industrials": 1.0,
            "Energy": 1.2,
            "Consumer Discretionary": 1.2,
            "Consumer Staples": 0.9,
            "Utilities": 0.8,
            "Materials": 1.0,
            "Real Estate": 0.9,
            "Communication Services": 1.1,
        }
    )
    confidence_range: tuple[float, float] = (0.5, 0.9)
    confidence_modifier_range: tuple[float, float] = (0.8, 1.2)
    horizon_multiplier: dict[int, float] = Field(default_factory=lambda: {1: 1.0, 2: 1.5, 5: 2.0})
    reward_risk: float = Field(default=2.5, gt=0)
    partial_1r_fraction: float = Field(
        default=0.5, ge=0, le=1, description="Share of the initial size taken at +1R."
    )
    partial_2r_fraction: float = Field(
        default=0.25, ge=0, le=1, description="Share of the initial size taken at +2R."
    )
    hold_days: dict[int, int] = Field(
        default_factory=lambda: {1: 1, 2: 2, 5: 5},
        description="Bars a position is held at most, per horizon, before it expires.",
    )


class OutcomeSettings(BaseModel):
    """The feedback loop: how a signal's outcome is judged, and when retraining fires."""

    rule: Literal["label", "legacy"] = Field(
        default="label",
        description="label: correct when the realized class under the labeling rule equals "
        "the side, over the signal's horizon; legacy: hold legacy_hold_days, BUY correct at "
        ">= legacy_buy_return, SELL correct when the return stays below it. Either way the "
        "outcome's label, and its training sample's, is the class at the signal's horizon "
        "(prices up to t + h), never the legacy hold's.",
    )
    legacy_hold_days: int = Field(default=14, ge=1)
    legacy_buy_return: float = Field(default=0.10)
    min_new_samples: int = Field(
        default=100, ge=1, description="New training samples needed before a retrain runs."
    )
    lookback_days: int = Field(
        default=60, ge=20, description="Bars read before the oldest pending signal (ATR warm-up)."
    )
    hit_rate_window_days: int = Field(
        default=30,
        ge=1,
        description="Calendar days of resolved outcomes (by exit date) in the rolling hit rate "
        "the tracker reports and pushes (turbomode_signal_hit_rate).",
    )


class StoreSettings(BaseModel):
    """Store URLs: embedded defaults locally, servers on a cluster."""

    signals_url: str = "sqlite:///data/signals.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    registry_sql_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    model_registry_uri: str = "data/models"
    pushgateway_url: str | None = None


class FeatureStoreSettings(BaseModel):
    """Feast: the local profile (DuckDB, SQLite, file registry) or production (Redis online
    store, PostgreSQL registry; URLs in ``stores``)."""

    profile: Literal["local", "production"] = "local"
    project: str = Field(default="turbomode", pattern=r"^[a-z][a-z0-9_]*$")
    offline_ttl_days: int = Field(
        default=7, ge=1, description="Point-in-time join lookback of the offline views (days)."
    )
    incremental_lookback: int = Field(
        default=600,
        ge=260,
        description="Bars before the first new date a nightly feature build recomputes from "
        "(turbomode.features.incremental): enough for every window (≤ 1 year) and for the "
        "slowest EMA to forget its start below float32 resolution.",
    )
    online_lookback_days: int = Field(
        default=10,
        ge=1,
        description="First materialization window (calendar days) before the newest date.",
    )
    engine: Literal["auto", "local", "ray"] = Field(
        default="auto",
        description="Where the feature build runs: local (one process, "
        "turbomode.features.engine), ray (symbol and date blocks as Ray tasks, "
        "turbomode.features.distributed) or auto (ray from ray_min_symbols on).",
    )
    ray_min_symbols: int = Field(
        default=5000,
        ge=1,
        description="Universe size from which engine=auto builds on Ray. On the same cores Ray "
        "is slower (its shuffle and start-up; README 'Scale'), so it pays where one process no "
        "longer fits a node: 5,000 symbols × 6 years take ≈ 28 GiB in one process, × 20 years "
        "≈ 90 GiB (benchmarks/bench_scale.py).",
    )
    offline_store: Literal["auto", "duckdb", "ray"] = Field(
        default="auto",
        description="Feast's offline store, where training sets are joined point in time: "
        "duckdb (one process over the parquet tables), ray (Feast's Ray offline store on the "
        "Ray at compute.ray_address, its join a group-by by key across the cluster: "
        "turbomode.feast_ray) or "
        "auto (ray for the production profile, duckdb for local).",
    )
    ray_staging: str | None = Field(
        default=None,
        description="Where the Ray offline store stages retrieval results (a directory or "
        "s3:// URI every Ray node can reach); None: <data_dir>/feast/ray_staging.",
    )
    ray_output: str | None = Field(
        default=None,
        description="Directory or s3:// URI where a Ray build also writes its rows as "
        "partitioned parquet (symbol_block=NNNNN/); None: only the offline tables.",
    )


class YFinanceSettings(BaseModel):
    """Politeness and resilience for the live source."""

    batch_size: int = Field(default=50, ge=1)
    min_interval_s: float = Field(default=1.0, ge=0, description="Pause between batch requests.")
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles each try.")
    cache_dir: Path = Path("data/cache/yfinance")
    cache_ttl_hours: float = Field(default=12.0, ge=0)


MacroRole = Literal["curve", "claims", "money", "manufacturing"]
MACRO_ROLES: tuple[MacroRole, ...] = ("curve", "claims", "money", "manufacturing")


def _macro_series() -> dict[MacroRole, str]:
    return {
        "curve": "T10Y2Y",
        "claims": "ICSA",
        "money": "M2SL",
        "manufacturing": "GACDFSA066MSFRBPHI",
    }


def _release_lags() -> dict[MacroRole, int]:
    return {"curve": 1, "claims": 5, "money": 60, "manufacturing": 21}


class MacroSettings(BaseModel):
    """Macro context: which series stand for each role the macro features read, where they come
    from, and whether the models use them.

    Features are named by role (``macro_curve_level``, ``macro_m2_yoy`` …), so a series is
    swapped here without touching the registry. A value is usable from the day it was first
    published: the vintage's ``realtime_start`` (ALFRED), or — where only final values exist —
    the observation date plus ``release_lag_days`` (turbomode.features.macro).
    """

    source: Literal["market", "fred", "none"] = Field(
        default="market",
        description=(
            "Where each ingest's macro step gets the series. market: the market source's own "
            "(the synthetic market generates them; parquet, csv and yfinance have none, so a "
            "data directory never mixes one market's prices with another's macro series); "
            "fred: refreshed from FRED at every ingest (a failure keeps the stored series and "
            "is reported); none: no macro series. Series fetched with `turbomode ingest "
            "--source fred` are kept by a market ingest."
        ),
    )
    series: dict[MacroRole, str] = Field(
        default_factory=_macro_series,
        description=(
            "FRED series id per role. manufacturing: the Philadelphia Fed Manufacturing "
            "Business Outlook Survey's current general activity diffusion index (seasonally "
            "adjusted): ISM's PMI is not on FRED; this is the closest diffusion index that is, "
            "published on the third Thursday of the month it describes (before ISM), from 1968, "
            "with vintages in ALFRED."
        ),
    )
    release_lag_days: dict[MacroRole, int] = Field(
        default_factory=_release_lags,
        description=(
            "Days from the observation date to the first release, used only where a series "
            "has final values without vintages (fred.vintages: false): curve — a day's spread "
            "is posted the next day; claims — the week ending Saturday is released on the "
            "Thursday after; money — the month (dated its first day) comes with the H.6 "
            "release near the fourth Tuesday of the next month (≤ 58 days); manufacturing — "
            "the survey comes out on the third Thursday of its own month (≤ 20 days)."
        ),
    )
    in_models: bool = Field(
        default=False,
        description=(
            "Whether the models' feature list includes the macro group. Off by default: the "
            "macro features' value has not been measured by the research protocol, and data "
            "without macro history (../shared/data) must train exactly the models it trained "
            "before. Training with it on fails when the training set holds no macro values."
        ),
    )


class FredSettings(BaseModel):
    """FRED's HTTP API (https://fred.stlouisfed.org/docs/api/fred/): key, politeness, retries
    and the on-disk cache of the ``fred`` macro source."""

    api_key: SecretStr | None = Field(
        default=None,
        description="FRED API key (TURBOMODE_FRED__API_KEY; else the FRED_API_KEY variable). "
        "Never printed: `config show` masks it and request URLs are redacted in logs and errors.",
    )
    base_url: str = "https://api.stlouisfed.org/fred"
    vintages: bool = Field(
        default=True,
        description="Read every vintage (ALFRED real-time periods), so each value is dated by "
        "its first release and revisions by theirs; false: today's values only, dated by "
        "macro.release_lag_days.",
    )
    observation_start: str = Field(
        default="1990-01-01", description="First observation date requested."
    )
    realtime_window_days: int = Field(
        default=1461,
        ge=30,
        description="Real-time period of one request (4 years). FRED refuses a period holding "
        "more than 2,000 vintage dates, and a daily series has one per business day; a window "
        "that is still refused is split in two.",
    )
    page_limit: int = Field(default=100_000, ge=1, le=100_000, description="Rows per page.")
    timeout_s: float = Field(default=30.0, gt=0)
    min_interval_s: float = Field(
        default=0.5, ge=0, description="Pause between requests (FRED allows 120 a minute)."
    )
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles each try.")
    cache_dir: Path = Path("data/cache/fred")
    cache_ttl_hours: float = Field(default=12.0, ge=0)


class ScheduleSettings(BaseModel):
    """Cron schedules of the batch jobs; the chart's CronWorkflows are rendered from these."""

    timezone: str = "America/New_York"
    nightly_scan: str = Field(
        default="0 23 * * 1-5",
        description="Weeknights after the close: a night without a new bar is reported "
        "(TurboModeScanNoNewData), so weekends are not scheduled.",
    )
    outcomes: str = "0 2 * * *"
    training_samples: str = "0 3 * * 0"
    retrain: str = "0 4 1 * *"
    adaptive_ranking: str = "0 2 1 * *"
    universe_curation: str = "0 2 1 1,4,7,10 *"
    daily_report: str = Field(
        default="0 8 * * 1-5",
        description="Weekday mornings, after the night's scan (23:00) and outcomes (02:00).",
    )
    weekly_report: str = Field(default="0 18 * * 5", description="Friday after the close.")


class NotifySettings(BaseModel):
    """Where ``turbomode report --send`` delivers: by SMTP and/or to a webhook, each when set.

    The SMTP password is never a setting: it is read from the environment variable
    ``smtp_password_env`` names (the chart sets it from a Secret). A webhook URL often carries
    its token: set it through ``TURBOMODE_NOTIFY__WEBHOOK_URL`` from a Secret, not in a file.
    """

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = Field(default=True, description="STARTTLS before logging in.")
    smtp_username: str | None = None
    smtp_password_env: str = "SMTP_PASSWORD"
    smtp_from: str | None = None
    smtp_to: str | None = Field(default=None, description="Recipients, comma-separated.")
    webhook_url: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    top_signals: int = Field(
        default=5, ge=1, description="Signals listed per cap class and side in a report."
    )


NEURAL_DEFAULTS: dict[str, Any] = {
    "hidden": 32,  # MLP width, LSTM state size, Transformer model width
    "heads": 2,
    "window": 10,  # days per sequence (LSTM, Transformer)
    "max_epochs": 30,
    "patience": 4,
    "batch_size": 512,
    "learning_rate": 2e-3,
    "weight_decay": 1e-4,
    "val_fraction": 0.2,
}
"""The neural learners' hyperparameters; ``models.neural`` overrides any of them."""


class ModelSettings(BaseModel):
    """Which model, on which rows, and the hyperparameters of each kind.

    The default — one rank model per horizon pooled over every sector, trained on the last 10
    years — was chosen by the research protocol on walk-forward folds before 2023
    (docs/research/); the stacked 3-class ensemble per sector (``target: class3``, ``scope:
    sector``, ``train_years: null``) stays available. Stacked ensembles are small by default,
    on purpose: with ~180 features, tree building cost grows with trees ×
    depth × sampled features, and on daily stock data deeper or longer models did not score
    better out of time (the legacy full-depth RandomForest was half of all training time).
    Feature subsampling (colsample / rsm) keeps each tree cheap; raise these on a cluster.
    """

    target: Literal["class3", "rank"] = Field(
        default="rank",
        description=(
            "class3: the stacked 3-class ensemble on the ATR labels; rank: one LightGBM "
            "regressor on the forward return's percentile within its (date, sector), with "
            "class probabilities calibrated on out-of-fold scores (turbomode.models.ranker)."
        ),
    )
    scope: Literal["sector", "pooled"] = Field(
        default="pooled",
        description=(
            "sector: one model per (sector, horizon); pooled: one model per horizon fitted on "
            "every sector's rows (about 11× the rows), registered under each sector's key."
        ),
    )
    train_years: float | None = Field(
        default=10.0,
        gt=0,
        description="Years of rows before the out-of-time window to train on (None: all).",
    )
    date_step: int = Field(
        default=2,
        ge=1,
        description=(
            "target=rank: train on every k-th trading date. Neighbouring days' rows are near "
            "copies (overlapping windows), so thinning halves the time and loses little."
        ),
    )
    oof_folds: int = Field(default=2, ge=2, description="Walk-forward folds for stacking.")
    embargo_days: int = Field(default=5, ge=0)
    test_start: str | None = Field(
        default=None,
        description="First date of the out-of-time window (None: the last test_fraction of dates).",
    )
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    lightgbm: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 40,
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_child_samples": 100,
            "max_bin": 63,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.5,
        }
    )
    catboost: dict[str, Any] = Field(
        default_factory=lambda: {
            "iterations": 40,
            "learning_rate": 0.2,
            "depth": 4,
            "rsm": 0.4,
            "border_count": 64,
        }
    )
    xgb_hist: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 40,
            "learning_rate": 0.1,
            "max_depth": 4,
            "subsample": 0.8,
            "colsample_bytree": 0.5,
            "min_child_weight": 20,
            "max_bin": 64,
        }
    )
    xgb_linear: dict[str, Any] = Field(
        default_factory=lambda: {"n_estimators": 20, "learning_rate": 0.5, "reg_lambda": 1.0}
    )
    random_forest: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 25,
            "max_depth": 8,
            "min_samples_leaf": 50,
            "max_samples": 0.5,
            "max_features": "sqrt",
        }
    )
    ranker: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 300,
            "learning_rate": 0.03,
            "num_leaves": 31,
            "min_child_samples": 2000,
            "subsample": 0.5,
            "subsample_freq": 1,
            "colsample_bytree": 0.5,
            "reg_lambda": 10.0,
            "max_bin": 63,
        },
        description="LightGBM regressor parameters of models.target=rank.",
    )
    meta: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 60,
            "learning_rate": 0.08,
            "num_leaves": 7,
            "min_child_samples": 200,
            "max_bin": 63,
        }
    )
    neural_learners: list[Literal["mlp", "lstm", "transformer"]] = Field(
        default_factory=list,
        description=(
            "target=class3: neural base learners added beside the five trees (the optional "
            "`neural` extra, JAX): mlp on the feature vector, lstm and transformer on the last "
            "`neural.window` days of `sequence_features`. Empty by default: the research "
            "protocol has not shown that they earn their training time (docs/research)."
        ),
    )
    voting: Literal["stacking", "hybrid"] = Field(
        default="stacking",
        description=(
            "stacking: the meta-learner on out-of-fold probabilities; hybrid: the seed's vote "
            "of the neural learners (per-model thresholds, two must agree, consensus boost)."
        ),
    )
    neural: dict[str, Any] = Field(
        default_factory=lambda: dict(NEURAL_DEFAULTS),
        description="Hyperparameters of the neural learners (turbomode.models.neural).",
    )
    sequence_features: list[str] = Field(
        default_factory=lambda: [
            "ret_1",
            "oc_ret_1",
            "gap_1",
            "ret_5",
            "sector_rank_ret_1",
            "rvol_20",
            "volume_ratio_20",
            "rsi_14",
        ],
        description="Per-day features the lstm and transformer read over their window.",
    )

    @model_validator(mode="after")
    def _hybrid_needs_voters(self) -> ModelSettings:
        if self.voting == "hybrid" and len(set(self.neural_learners)) < 2:
            raise ValueError("models.voting=hybrid needs two or more models.neural_learners")
        return self


class ComputeSettings(BaseModel):
    """Where training runs: CPU by default, CUDA when configured."""

    device: Literal["cpu", "cuda"] = "cpu"
    ray_address: str | None = Field(default=None, description="None: start Ray locally.")
    cpus_per_task: float = Field(default=1.0, gt=0)
    gpus_per_task: float = Field(default=0.0, ge=0)
    inference: Literal["fast", "native"] = Field(
        default="fast",
        description=(
            "How the scan, the service and the backtest score with a stacked ensemble: fast "
            "evaluates its compiled form (turbomode.models.compiled) for calls of up to 256 "
            "rows, native calls each library's predict (the reference, for verification)."
        ),
    )


class GateSettings(BaseModel):
    """The promotion gate (turbomode.models.gate): what a candidate must show, out of time, to
    replace production.

    Defaults, and why:

    * ``alpha`` 0.05 with a block-bootstrap CI whose lower bound must also exceed 0: the t-test
      alone assumes independent days, which overlapping multi-day returns are not. Every
      baseline comparison must pass (an intersection-union test), so no multiplicity correction
      is needed. ``block_length`` 5 = the longest horizon, so overlap stays inside a block.
    * ``min_days`` 60: about three months, twelve 5-day blocks; fewer and the bootstrap has too
      few independent pieces to say anything.
    * ``min_mean_ic`` 0.01: twice the 0.005 daily rank IC that Qlib's Alpha158 + LightGBM reaches
      on this data (DESIGN.md); below it, trading costs eat the edge.
    * ``min_balanced_accuracy`` 0.36: three points above the 1/3 of guessing on three classes.
    * ``production_*_tolerance`` (IC 0.005, balanced accuracy 0.01): how much worse than
      production, on the same window, a candidate may look. Small on purpose: retrains repeat
      monthly, and accepting a within-noise step down every time compounds into real decay.
    * profile ``legacy``: the old system's targets (accuracy 60 %, precision and recall 55 %),
      applied honestly — to balanced accuracy and to BUY and SELL precision/recall, never plain
      accuracy — in place of the IC and balanced-accuracy floors.
    * ``look_correction`` ``alpha_spending``: a (sector, horizon) is gated again at every
      retrain, on test windows that overlap by ~80 %, so a fixed ``alpha`` per decision is
      worn down — sooner or later a model without edge passes by chance. The k-th decision on
      a key tests the baselines at ``alpha`` · 6/(π² k²); these sum to ``alpha``, so the chance
      that a key *ever* promotes a model that does not beat the baselines stays below
      ``alpha`` whatever the overlap (:func:`turbomode.models.gate.look_alpha`). ``none``
      tests every decision at ``alpha`` (the old gate; kept to measure the difference).
    """

    profile: Literal["honest", "legacy"] = "honest"
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="One-sided p-value bound.")
    block_length: int = Field(default=5, ge=1, description="Bootstrap block length (days).")
    n_boot: int = Field(default=2000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Bootstrap seed: the same inputs, the same report.")
    required_baselines: list[str] = Field(
        default_factory=lambda: ["majority", "prior", "momentum"],
        description="Baselines that must be present and beaten; extra ones given are tested too.",
    )
    min_days: int = Field(default=60, ge=2, description="Test days needed (daily IC defined).")
    min_mean_ic: float = Field(default=0.01, description="honest: mean daily rank IC floor.")
    min_balanced_accuracy: float = Field(
        default=0.36, ge=0, le=1, description="honest: balanced accuracy floor."
    )
    legacy_min_balanced_accuracy: float = Field(
        default=0.60, ge=0, le=1, description="legacy: balanced accuracy floor."
    )
    legacy_min_precision: float = Field(
        default=0.55, ge=0, le=1, description="legacy: BUY and SELL precision floor."
    )
    legacy_min_recall: float = Field(
        default=0.55, ge=0, le=1, description="legacy: BUY and SELL recall floor."
    )
    production_ic_tolerance: float = Field(
        default=0.005, ge=0, description="Candidate mean IC may trail production by this much."
    )
    production_balanced_accuracy_tolerance: float = Field(
        default=0.01, ge=0, description="Candidate balanced accuracy may trail by this much."
    )
    look_correction: Literal["alpha_spending", "none"] = Field(
        default="alpha_spending",
        description="Spend alpha over the repeated decisions on one key (alpha_spending) or "
        "test each at alpha (none).",
    )


class Regime(StrEnum):
    """The four market regimes; values are the plain names the Smart Scanner uses."""

    BULL = "BULL"
    BEAR = "BEAR"
    CHOPPY = "CHOPPY"
    VOLATILE = "VOLATILE"


class RegimeSettings(BaseModel):
    """Every number of the regime detector and the regime-adaptive entry thresholds."""

    # --- HMM -----------------------------------------------------------------------------
    n_states: int = Field(default=3, ge=2, le=6, description="Hidden states of the HMM.")
    vol_window: int = Field(
        default=20, ge=2, description="Bars of SPY log returns in the realized volatility."
    )
    min_history: int = Field(
        default=504,
        ge=50,
        description="HMM observations (SPY bars with a return and a volatility) before the "
        "first fit; earlier days get no regime.",
    )
    refit_every: int = Field(default=21, ge=1, description="SPY bars between HMM refits.")
    fit_window: int | None = Field(
        default=None,
        ge=50,
        description="Observations per fit: None = expanding window from the first bar.",
    )
    filter_burn_in: int | None = Field(
        default=504,
        ge=0,
        description="Bars the forward filter runs before each refit bar, from the fitted "
        "chain's stationary distribution (the filter forgets its start within weeks); None "
        "= from the first bar of the fit window (exact, slower).",
    )
    covariance_type: Literal["full", "diag"] = Field(
        default="full",
        description="Per-state covariance of (return, log volatility): full lets a state "
        "tie falling prices to rising volatility; diag has fewer parameters.",
    )
    n_iter: int = Field(default=100, ge=1, description="EM iterations of the first fit.")
    n_iter_refit: int = Field(default=25, ge=1, description="EM iterations of a warm refit.")
    tol: float = Field(default=1e-3, gt=0, description="EM log-likelihood gain to stop at.")
    random_state: int = 7
    volatile_state_min_vol: float = Field(
        default=0.20,
        ge=0,
        description="The highest-volatility state means VOLATILE only if its annualized "
        "volatility is at least this.",
    )
    bear_state_max_return: float = Field(
        default=-0.10,
        description="A non-volatile state whose annualized mean log return is below this "
        "means BEAR.",
    )

    # --- VIX rules -----------------------------------------------------------------------
    vix_extreme: float = Field(default=30.0, gt=0, description="VIX at or above: VOLATILE.")
    vix_elevated: float = Field(
        default=25.0, gt=0, description="VIX at or above, and rising: volatile warning."
    )
    vix_rising_bars: int = Field(
        default=5, ge=1, description="Rising: VIX above its value this many SPY bars before."
    )

    # --- bear early warning --------------------------------------------------------------
    sma_long: int = Field(default=200, ge=2)
    sma_short: int = Field(default=50, ge=2)
    sma_slope_bars: int = Field(
        default=10,
        ge=1,
        description="Falling: SMA(sma_short) below its value this many bars before.",
    )
    drawdown_window: int = Field(default=252, ge=2, description="Bars of the high for drawdown.")
    bear_drawdown: float = Field(
        default=0.10, gt=0, lt=1, description="Drawdown from the high that arms the warning."
    )
    bull_requires_uptrend: bool = Field(
        default=True, description="An HMM BULL with SPY below SMA(sma_long) is CHOPPY."
    )

    # --- entry thresholds (0–100 signal strength) ----------------------------------------
    base_threshold: float = Field(
        default=60.0, ge=0, le=100, description="Entry threshold with no known regime."
    )
    thresholds: dict[Regime, float] = Field(
        default_factory=lambda: {
            Regime.BULL: 65.0,
            Regime.VOLATILE: 45.0,
            Regime.CHOPPY: 60.0,
            Regime.BEAR: 50.0,
        },
        description="Entry threshold per regime on the 0–100 signal strength.",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: dict[Regime, float]) -> dict[Regime, float]:
        bad = {str(k): x for k, x in v.items() if not 0.0 <= float(x) <= 100.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 100], got {bad}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RegimeSettings:
        if self.vix_elevated > self.vix_extreme:
            raise ValueError(
                f"vix_elevated ({self.vix_elevated}) must not exceed vix_extreme "
                f"({self.vix_extreme})"
            )
        if self.sma_short >= self.sma_long:
            raise ValueError(
                f"sma_short ({self.sma_short}) must be shorter than sma_long ({self.sma_long})"
            )
        if self.fit_window is not None and self.fit_window < self.min_history:
            raise ValueError(
                f"fit_window ({self.fit_window}) must be at least min_history ({self.min_history})"
            )
        return self


# --- Smart Scanner: its tiers, regimes and settings (issue #9) -------------------------------


class Tier(StrEnum):
    """A symbol's measured quality (the Smart Scanner's tiers); values match ``TierName``."""

    ELITE = "Elite"
    STRONG = "Strong"
    AVERAGE = "Average"
    WEAK = "Weak"
    AVOID = "Avoid"


TIER_ORDER: tuple[Tier, ...] = (Tier.ELITE, Tier.STRONG, Tier.AVERAGE, Tier.WEAK, Tier.AVOID)

REGIMES: tuple[str, ...] = ("BULL", "BEAR", "CHOPPY", "VOLATILE")
"""The values of :class:`Regime` as plain strings, in the order the Smart Scanner lists them."""

TRADED_TIERS: tuple[Tier, ...] = (Tier.ELITE, Tier.STRONG, Tier.AVERAGE, Tier.WEAK)


class TierCutoff(BaseModel):
    """A symbol earns ``tier`` when its measured win rate and expectancy (mean return per
    trade) both reach these floors; cut-offs are tried best tier first."""

    tier: Tier
    min_win_rate: float = Field(ge=0, le=1)
    min_expectancy: float


def _need_all(name: str, keys: Container[object], wanted: tuple[object, ...]) -> None:
    missing = [str(k) for k in wanted if k not in keys]
    if missing:
        raise ValueError(f"{name} lacks {missing}")


class SmartSettings(BaseModel):
    """Signal modifiers, tiers, sizing, portfolio constraints and exits of the Smart Scanner.

    Fractions are of equity or of price (0.02 = 2 %); strengths are on a 0–100 scale.
    """

    # --- signal modifiers and tiers ------------------------------------------------------
    tier_multiplier: dict[Tier, float] = Field(
        default_factory=lambda: {
            Tier.ELITE: 1.1,
            Tier.STRONG: 1.05,
            Tier.AVERAGE: 1.0,
            Tier.WEAK: 0.9,
            Tier.AVOID: 0.8,
        },
        description="Adjusted strength = raw × modifiers × this.",
    )
    penalties_only: bool = Field(
        default=False, description="Apply penalty rules only; boosts are measured but ignored."
    )
    modifier_min_samples: int = Field(
        default=30, ge=1, description="Matching trades a rule needs in the training span."
    )
    modifier_min_edge: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="How far (absolute) a rule's win rate must sit from the base rate, in its "
        "own direction, for the rule to be active.",
    )
    tier_lookback_days: int = Field(
        default=365, ge=1, description="Calendar days of closed trades each ranking uses."
    )
    tier_min_trades: int = Field(
        default=10, ge=1, description="Fewer closed trades than this → Average (no evidence)."
    )
    tier_cutoffs: list[TierCutoff] = Field(
        default_factory=lambda: [
            TierCutoff(tier=Tier.ELITE, min_win_rate=0.60, min_expectancy=0.010),
            TierCutoff(tier=Tier.STRONG, min_win_rate=0.55, min_expectancy=0.005),
            TierCutoff(tier=Tier.AVERAGE, min_win_rate=0.45, min_expectancy=0.0),
            TierCutoff(tier=Tier.WEAK, min_win_rate=0.40, min_expectancy=-0.005),
        ],
        description="Tried in order; a symbol that meets none is Avoid.",
    )
    curation_quarters: int = Field(
        default=2,
        ge=1,
        description="Consecutive quarterly rankings at Avoid that drop a symbol from the universe.",
    )

    # --- sizing --------------------------------------------------------------------------
    kelly_fraction: float = Field(default=0.5, gt=0, le=1, description="Fractional Kelly.")
    regime_multiplier: dict[str, float] = Field(
        default_factory=lambda: {"VOLATILE": 1.3, "BEAR": 1.2, "CHOPPY": 1.0, "BULL": 0.8}
    )
    tier_cap: dict[Tier, float] = Field(
        default_factory=lambda: {
            Tier.ELITE: 0.15,
            Tier.STRONG: 0.12,
            Tier.AVERAGE: 0.075,
            Tier.WEAK: 0.04,
            Tier.AVOID: 0.0,
        },
        description="Largest fraction of equity one position of the tier may take.",
    )
    min_size: float = Field(default=0.02, ge=0, le=1)
    max_size: float = Field(default=0.15, gt=0, le=1)

    # --- portfolio constraints -----------------------------------------------------------
    max_positions: int = Field(default=6, ge=1)
    max_per_sector: int = Field(default=2, ge=1)
    correlation_threshold: float = Field(default=0.7, gt=-1, lt=1)
    max_correlated: int = Field(
        default=3,
        ge=1,
        description="Most positions in one correlated group: a candidate together with the "
        "positions it correlates with above the threshold.",
    )
    correlation_lookback: int = Field(default=60, ge=2, description="Daily returns used.")
    correlation_min_periods: int = Field(default=20, ge=2)
    max_heat: float = Field(default=0.15, gt=0, le=1, description="Σ size × stop distance.")
    skip_earnings: bool = Field(default=True, description="Skip signals near earnings.")
    earnings_window_days: int = Field(
        default=3, ge=0, description="Business days ahead that count as 'near earnings'."
    )

    # --- exits ---------------------------------------------------------------------------
    targets: dict[Tier, tuple[float, float]] = Field(
        default_factory=lambda: {
            Tier.ELITE: (0.02, 0.035),
            Tier.STRONG: (0.02, 0.03),
            Tier.AVERAGE: (0.02, 0.025),
            Tier.WEAK: (0.015, 0.02),
        },
        description="First and second target above the entry, per traded tier.",
    )
    first_target_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="Share of the position sold at the first target."
    )
    stops: dict[Tier, float] = Field(
        default_factory=lambda: {
            Tier.ELITE: 0.03,
            Tier.STRONG: 0.03,
            Tier.AVERAGE: 0.025,
            Tier.WEAK: 0.02,
        },
        description="Stop distance below the entry, checked at the close.",
    )
    max_hold_days: dict[Tier, int] = Field(
        default_factory=lambda: {Tier.ELITE: 5, Tier.STRONG: 4, Tier.AVERAGE: 3, Tier.WEAK: 2}
    )
    trailing_stop_pct: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="After the first target, trail the stop this far below the best close; "
        "None turns trailing off.",
    )

    @field_validator("regime_multiplier")
    @classmethod
    def _regimes(cls, v: dict[str, float]) -> dict[str, float]:
        _need_all("regime_multiplier", v, REGIMES)
        unknown = sorted(set(v) - set(REGIMES))
        if unknown:
            raise ValueError(f"regime_multiplier has unknown regimes {unknown}; use {REGIMES}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SmartSettings:
        _need_all("tier_multiplier", self.tier_multiplier, TIER_ORDER)
        _need_all("tier_cap", self.tier_cap, TIER_ORDER)
        for name in ("targets", "stops", "max_hold_days"):
            _need_all(name, getattr(self, name), TRADED_TIERS)
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} exceeds max_size {self.max_size}")
        for tier, (t1, t2) in self.targets.items():
            if not 0 < t1 <= t2:
                raise ValueError(f"targets[{tier.value}] must satisfy 0 < first ≤ second")
        for tier, stop in self.stops.items():
            if not 0 < stop < 1:
                raise ValueError(f"stops[{tier.value}] must lie in (0, 1), got {stop}")
        for tier, days in self.max_hold_days.items():
            if days < 1:
                raise ValueError(f"max_hold_days[{tier.value}] must be ≥ 1, got {days}")
        cut_tiers = [c.tier for c in self.tier_cutoffs]
        if Tier.AVOID in cut_tiers or len(set(cut_tiers)) != len(cut_tiers):
            raise ValueError("tier_cutoffs: each traded tier at most once, never Avoid")
        return self


BacktestRuleSet = Literal["atr", "smart"]


class BacktestSettings(BaseModel):
    """Every default of a backtest, in one typed object.

    Cost model, per fill (entries and every exit, partial exits included): the fill price is
    the rule's price moved ``slippage_bps`` against the trade (a buy pays more, a sell gets
    less), and the commission is ``commission_per_share`` × shares + ``commission_bps`` × the
    filled notional, at least ``min_commission``.
    """

    rules: BacktestRuleSet = Field(
        default="atr",
        description="Exit rule set: 'atr' (TurboMode ATR stop, 1R/2R partials, target, trail, "
        "expiry) or 'smart' (Smart Scanner tiered targets and stops at the close).",
    )
    initial_cash: float = Field(default=100_000.0, gt=0, description="Starting capital.")
    slippage_bps: float = Field(
        default=5.0, ge=0, description="Adverse price move per fill, in basis points."
    )
    commission_per_share: float = Field(
        default=0.0, ge=0, description="Commission per share traded (e.g. 0.005 at a broker)."
    )
    commission_bps: float = Field(
        default=1.0, ge=0, description="Commission as basis points of the filled notional."
    )
    min_commission: float = Field(default=0.0, ge=0, description="Floor of one fill's commission.")
    position_fraction: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description="Default sizing: this fraction of equity (at the previous close) per entry.",
    )
    max_positions: int = Field(default=10, ge=1, description="Open positions at most.")
    max_gross_leverage: float = Field(
        default=1.0,
        gt=0,
        description="Gross value of the book (longs + shorts) at most this multiple of equity; "
        "an entry that would exceed it is skipped.",
    )
    allow_short: bool = Field(
        default=True,
        description="SELL signals open shorts (ATR rules only; the Smart rules are long-only).",
    )
    whole_shares: bool = Field(
        default=True, description="Round entries and partial exits down to whole shares."
    )
    default_horizon: int = Field(
        default=5,
        ge=1,
        description="The horizon (days) of a job that works on one when none is given "
        "(backtest, walk-forward, Smart Scanner, ranking, curation), and of an ATR-rules "
        "signal without a 'horizon' column.",
    )
    periods_per_year: int = Field(
        default=252, ge=1, description="Trading days per year: annualizes Sharpe and Sortino."
    )
    benchmark_symbol: str = Field(default="SPY", description="Buy-and-hold benchmark.")
    report_trades: int = Field(
        default=200, ge=0, description="Trades listed in the HTML report (the CSV has all)."
    )


class Settings(BaseSettings):
    """Every setting of the platform, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="TURBOMODE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data: DataSettings = Field(default_factory=DataSettings)
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    universe: UniverseSettings = Field(default_factory=UniverseSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    outcomes: OutcomeSettings = Field(default_factory=OutcomeSettings)
    stores: StoreSettings = Field(default_factory=StoreSettings)
    features: FeatureStoreSettings = Field(default_factory=FeatureStoreSettings)
    yfinance: YFinanceSettings = Field(default_factory=YFinanceSettings)
    macro: MacroSettings = Field(default_factory=MacroSettings)
    fred: FredSettings = Field(default_factory=FredSettings)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    regime: RegimeSettings = Field(default_factory=RegimeSettings)
    smart: SmartSettings = Field(default_factory=SmartSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)

    def horizon_or_default(self, horizon: int | None = None) -> int:
        """``horizon``, or ``backtest.default_horizon`` when None: the one default of every
        job and command that works on a single horizon, so they agree on it."""
        return self.backtest.default_horizon if horizon is None else int(horizon)

    @model_validator(mode="after")
    def _stores_under_data_dir(self) -> Settings:
        # Store locations not set explicitly follow the data directory (turbomode.workspace).
        from turbomode.workspace import rebase

        return rebase(self)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > environment > YAML file > defaults.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = os.environ.get("TURBOMODE_CONFIG")
        if yaml_path:
            if not Path(yaml_path).is_file():
                raise FileNotFoundError(f"TURBOMODE_CONFIG points to a missing file: {yaml_path}")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional YAML file, the environment and overrides."""
    if config_file is None:
        return Settings(**overrides)
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    previous = os.environ.get("TURBOMODE_CONFIG")
    os.environ["TURBOMODE_CONFIG"] = str(path)
    try:
        return Settings(**overrides)
    finally:
        if previous is None:
            os.environ.pop("TURBOMODE_CONFIG", None)
        else:
            os.environ["TURBOMODE_CONFIG"] = previous


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (read once); tests build their own with ``load_settings``."""
    return load_settings()
