"""Request and response bodies of the service; the OpenAPI document is generated from them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from turbomode.config import Horizon
from turbomode.records.signals import Side

SignalName = Literal["BUY", "SELL", "HOLD"]
CapClass = Literal["large", "mid", "small", "unknown"]
Stance = Literal["bullish", "bearish", "neutral"]
# /signals' order: effective confidence (decayed by age, the default) or the call's own.
SignalOrder = Literal["effective", "confidence"]

SymbolField = Annotated[
    str,
    Field(
        min_length=1,
        max_length=20,
        description="Ticker as in the universe (Yahoo style, e.g. BRK-B); case-insensitive.",
        examples=["AAPL"],
    ),
]
HorizonField = Annotated[
    Horizon, Field(description="Holding horizon in trading days: 1, 2 or 5.", examples=[1])
]
# The models read float32 (turbomode.models.ensemble.feature_matrix): a larger finite value
# becomes infinity there, which the RandomForest of a stacked ensemble refuses with a 500.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _within_float32(value: float) -> float:
    """The range check with a message that says why (pydantic's ``le`` prints 39 digits)."""
    if abs(value) > FLOAT32_MAX:
        raise PydanticCustomError(
            "float32_range",
            "{value} is beyond float32 (±3.4e38), the models' input type",
            {"value": f"{value:g}"},
        )
    return value


FeatureValue = Annotated[
    float,
    Field(
        allow_inf_nan=False,
        json_schema_extra={"minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX},
    ),
    AfterValidator(_within_float32),
]


class Thresholds(BaseModel):
    """Entry thresholds: a signal fires when P(BUY) or P(SELL) — or, with ``on: lift``, its
    ratio to the model's class prior — reaches its threshold."""

    buy: float
    sell: float
    on: Literal["probability", "lift"] = Field(
        default="probability",
        description="what the thresholds compare: P(side), or its lift over the class prior "
        "(signals.threshold_mode quantile)",
    )


class Prediction(BaseModel):
    """One symbol × horizon scored by its production ensemble on its latest online features.

    ``signal`` applies the scan's entry rule (:func:`turbomode.signals.rules.entry_candidates`)
    at the latest scan's thresholds; a BUY or SELL carries the stop, target and entry range the
    scan would publish (:mod:`turbomode.risk.levels`), a HOLD carries none. ``confidence`` is
    the probability of the signal's class.
    """

    symbol: str
    sector: str
    cap_class: str
    horizon: int
    p_sell: float
    p_hold: float
    p_buy: float
    signal: SignalName
    confidence: float
    close: float = Field(description="Close of price_date: the entry basis of stop and target.")
    atr: float = Field(description="ATR(14) from the feature vector.")
    entry_low: float | None = None
    entry_high: float | None = None
    stop: float | None = None
    target: float | None = None
    stop_distance: float | None = None
    model_key: str
    model_version: str
    price_date: date
    features_as_of: datetime | None = Field(
        default=None, description="Event time of the online feature vector used."
    )
    thresholds: Thresholds


class SymbolError(BaseModel):
    """A symbol (and horizon, when only that one failed) that could not be scored, and why."""

    symbol: str
    horizon: int | None = None
    error: str


class BatchPredictions(BaseModel):
    """Predictions for every scorable (symbol, horizon); the others are in ``errors``."""

    predictions: list[Prediction]
    errors: list[SymbolError]


class FeatureRowPrediction(BaseModel):
    """Probabilities and the entry rule's call for one submitted feature vector."""

    p_sell: float
    p_hold: float
    p_buy: float
    signal: SignalName
    confidence: float


class FeaturePredictions(BaseModel):
    """Predictions for raw feature vectors, in the order they were sent."""

    sector: str
    horizon: int
    model_key: str
    model_version: str
    n_features: int
    thresholds: Thresholds
    predictions: list[FeatureRowPrediction]


class ErrorBody(BaseModel):
    """Every error this service answers itself: what was wrong and how to fix it."""

    error: str
    detail: str | None = None


# The fields of turbomode.records.signals.Signal in its order, and the age that
# signals_to_frame adds: tests/serving/test_schemas.py keeps them equal.
class FeatureContribution(BaseModel):
    """One feature's part in a score: its value, where that value sits in tonight's
    cross-section of the universe, and what the feature is (the feature registry)."""

    feature: str
    group: str
    description: str
    value: float | None = Field(description="The feature's value (null: missing).")
    percentile: float | None = Field(
        description="Share (%) of tonight's universe at or below the value (null: missing)."
    )
    contribution: float = Field(description="Its additive part of P(BUY) − P(SELL).")


class ExplanationSummary(BaseModel):
    """Why a model scored a symbol as it did: ``value`` = ``base`` + every feature's
    contribution (turbomode.models.explain); ``top``: the five largest by size."""

    model_key: str
    model_version: str
    output: str = Field(description="What is explained: P(BUY) - P(SELL).")
    value: float
    base: float = Field(description="The output knowing no feature (the model's expectation).")
    top: list[FeatureContribution]


class Explanation(ExplanationSummary):
    """A symbol × horizon explained by its production model on its latest online features."""

    symbol: str
    horizon: int
    features_as_of: datetime | None = Field(
        default=None, description="Event time of the online feature vector used."
    )
    contributions: dict[str, float] = Field(description="Every feature's contribution.")


class SignalOut(BaseModel):
    """An active signal of the latest scan, aged as of the scan date."""

    symbol: str
    sector: str
    cap_class: str
    horizon: int
    side: Side
    signal_date: date
    p_buy: float
    p_hold: float
    p_sell: float
    confidence: float
    effective_confidence: float
    age_days: int
    age_bucket: Literal["hot", "warm", "cool", "cold"]
    close: float
    atr: float
    entry_low: float
    entry_high: float
    stop: float
    target: float
    stop_distance: float
    model_version: str
    explanation: ExplanationSummary | None = Field(
        default=None, description="Why the signal was issued, from the night it was issued."
    )


class SignalsPage(BaseModel):
    """Signals of the latest scan, by effective confidence (highest first)."""

    scan_date: date | None
    run_id: int | None
    thresholds: Thresholds | None
    total: int = Field(description="Signals matching the filters before ``limit``.")
    signals: list[SignalOut]


class SectorOut(BaseModel):
    """One sector's stance from the latest scan's active signals."""

    sector: str
    n_buy: int
    n_sell: int
    mean_eff_buy: float | None
    mean_eff_sell: float | None
    net: int
    buy_share: float | None
    stance: Stance


class SectorsPage(BaseModel):
    scan_date: date | None
    sectors: list[SectorOut]


class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    """Ready only when the models and the online store answer."""

    status: Literal["ready", "not ready"]
    checks: dict[str, Check]
    models_loaded: int
    price_date: date | None
    scan_date: date | None


class ModelStatus(BaseModel):
    key: str
    production_version: str | None
    served_version: str | None


class ModelsPage(BaseModel):
    models: list[ModelStatus]


class SwapOut(BaseModel):
    key: str
    old: str | None
    new: str | None


class ReloadResult(BaseModel):
    """What an admin reload changed."""

    swaps: list[SwapOut]
    market_reloaded: bool
    scan_reloaded: bool
