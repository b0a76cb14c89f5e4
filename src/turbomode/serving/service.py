"""The BentoML service: ``bentoml serve turbomode.serving.service:TurboMode`` (or ``turbomode
serve``).

* ``POST /predict``, ``/predict_batch``, ``/predict_features``, ``/explain`` — BentoML APIs
  (typed inputs, validated by pydantic: a wrong type, a horizon other than 1/2/5, a NaN or an
  infinity is a 400 before any code here runs).
* ``GET /signals``, ``/signals/{symbol}``, ``/sectors``, ``/models``, ``/health``,
  ``/performance/equity``, ``/performance/hit_rates``, ``/performance/trades``,
  ``POST /admin/reload`` and the dashboard (``/dashboard``) — routes of a FastAPI app mounted
  on the service, written as methods so they share its state.
* ``/livez``, ``/readyz`` (ready when :meth:`TurboMode.__is_ready__` says so), ``/metrics``
  and the OpenAPI document (``/docs.json``) come from BentoML.
* :class:`turbomode.serving.guard.RequestGuard` stands in front of all of them: body size
  limit, JSON only on the APIs, BentoML's error bodies and logs made to match the document.

Every route is a line or two over :class:`turbomode.serving.predictor.Predictor`, which holds
the logic and is tested without a server. Errors are JSON ``{"error": ..., "detail": ...}``
(a string each) with their status (400, 401, 403, 404, 413, 415, 503); FastAPI's 422 keeps its
own documented format.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import bentoml
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from turbomode import logs
from turbomode.config import Settings, load_settings
from turbomode.reports import performance
from turbomode.serving.guard import RequestGuard, body_schemas, document, quiet_client_errors
from turbomode.serving.predictor import Predictor, ServingError
from turbomode.serving.schemas import (
    BatchPredictions,
    CapClass,
    ErrorBody,
    Explanation,
    FeaturePredictions,
    FeatureValue,
    Health,
    HorizonField,
    ModelsPage,
    Prediction,
    ReloadResult,
    SectorsPage,
    Side,
    SignalOrder,
    SignalsPage,
    Stance,
    SymbolField,
)
from turbomode.serving.settings import ServingSettings
from turbomode.store import SignalStore

# BentoML 1.4.39 reads ``model_fields`` off each request's input instance, which pydantic 2.11+
# flags with a DeprecationWarning on every request: noise in the log and time on the hot path.
warnings.filterwarnings(
    "ignore",
    message="Accessing the 'model_fields' attribute on the instance is deprecated",
    category=DeprecationWarning,
    module="_bentoml_impl.server.app",
)
DASHBOARD = Path(__file__).parent / "dashboard"
SERVE = ServingSettings()
T = TypeVar("T")
log = logging.getLogger("turbomode.serving")

web = FastAPI(
    title="TurboMode",
    description="Signals, sectors, health and the dashboard.",
    docs_url=None,  # BentoML serves the one OpenAPI document (/docs.json) and its UI (/)
    redoc_url=None,
    openapi_url=None,
)
web.mount("/dashboard/static", StaticFiles(directory=DASHBOARD / "static"), name="static")
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "The market data or a store does not answer"},
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A filter value the service does not know"},
    **UNAVAILABLE,
}


STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A filter value the store cannot hold"},
    404: {"model": ErrorBody, "description": "No such wallet (or none yet)"},
    503: {"model": ErrorBody, "description": "The signals store does not answer"},
}


def _from_store(settings: Settings, call: Callable[[SignalStore], T]) -> T:
    """``call`` on a store opened for it; its input errors as 400/404, a store that does not
    answer (no file, no tables) as 503."""
    store = SignalStore(settings.stores.signals_url)
    try:
        return call(store)
    except performance.NoWalletError as exc:
        raise ServingError(404, str(exc)) from exc
    except performance.PerformanceInputError as exc:
        raise ServingError(400, str(exc)) from exc
    except SQLAlchemyError as exc:
        raise ServingError(503, "signals store unavailable", type(exc).__name__) from exc
    finally:
        store.dispose()


@web.exception_handler(ServingError)
async def _serving_error(_request: Request, exc: ServingError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _answer(call: Callable[[], T]) -> T | Response:
    """A BentoML API's result, or its error as JSON with the error's own status. Nothing of
    ours reaches BentoML's handler: it would wrap a 4xx message in a list, and answer a
    pydantic error of our own making as the client's 400 (the guard drops its log of those)."""
    try:
        return call()
    except ServingError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    except Exception:
        log.exception("serving.fault")
        body = ErrorBody(error="internal error: see the server log").model_dump(exclude_none=True)
        return JSONResponse(body, status_code=500)


@bentoml.asgi_app(web, path="/")
@bentoml.service(
    name="turbomode",
    workers=SERVE.workers,
    threads=SERVE.threads,
    traffic={"timeout": 60},
)
class TurboMode:
    """TurboMode: stock signals from the production ensembles and the nightly scan."""

    def __init__(self) -> None:
        logs.configure("INFO")  # the service's events as JSON lines on stderr
        self.core = Predictor(load_settings(), SERVE)
        self.core.start()

    @bentoml.on_shutdown
    def _stop(self) -> None:
        self.core.stop()

    def __is_ready__(self) -> bool:
        return self.core.health().status == "ready"

    # ---- predictions (BentoML APIs) -----------------------------------------------------
    @bentoml.api(route="/predict", output_spec=Prediction)
    def predict(self, symbol: SymbolField, horizon: HorizonField) -> Prediction | Response:
        """One symbol and horizon: its latest online features → the production ensemble of
        its sector and horizon → P(SELL/HOLD/BUY), the entry rule's signal, stop, target and
        model version. 404 when the symbol is not in the universe or cannot be scored (no
        features, no bar, no usable ATR, no production model)."""
        return _answer(lambda: self.core.predict(symbol, horizon))

    @bentoml.api(route="/predict_batch", output_spec=BatchPredictions)
    def predict_batch(
        self,
        symbols: Annotated[list[SymbolField], Field(min_length=1, description="Tickers.")],
        horizons: Annotated[
            list[HorizonField] | None, Field(description="Horizons (default: all served).")
        ] = None,
    ) -> BatchPredictions | Response:
        """Many symbols in one call: one online read and one predict_proba per (sector,
        horizon). Symbols that cannot be scored are listed in ``errors`` with the reason."""
        return _answer(lambda: self.core.predict_batch(symbols, horizons))

    @bentoml.api(route="/predict_features", output_spec=FeaturePredictions)
    def predict_features(
        self,
        sector: Annotated[str, Field(description="GICS sector of the model.")],
        horizon: HorizonField,
        features: Annotated[
            list[list[FeatureValue | None]],
            Field(
                min_length=1,
                description="Feature vectors in the model's feature order (`turbomode features "
                "list`); null marks a missing value; NaN, infinities and values beyond float32 "
                "(±3.4e38) are refused.",
            ),
        ],
    ) -> FeaturePredictions | Response:
        """Raw feature vectors scored by the production ensemble of a sector and horizon."""
        return _answer(lambda: self.core.predict_features(sector, horizon, features))

    @bentoml.api(route="/explain", output_spec=Explanation)
    def explain(self, symbol: SymbolField, horizon: HorizonField) -> Explanation | Response:
        """Why the production model scores a symbol as it does: every feature's contribution
        to P(BUY) − P(SELL) (they sum to it with the base value), and the top five with
        their values, descriptions and percentiles in the universe tonight. 404 when the
        symbol is not in the universe, has no features, or its key no production model."""
        return _answer(lambda: self.core.explain(symbol, horizon))

    # ---- signals, operations (FastAPI routes) ----------------------------------------------
    @web.get("/signals", response_model=SignalsPage, responses=ERRORS)
    def signals(
        self,
        cap_class: CapClass | None = None,
        side: Side | None = None,
        sector: str | None = None,
        horizon: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
        order: SignalOrder = "effective",
    ) -> SignalsPage:
        """The latest scan's active signals by effective confidence (``order=confidence``: by
        the call's own confidence), filtered by cap class, side, sector and horizon."""
        return self.core.signals(cap_class, side, sector, horizon, limit=limit, order=order)

    @web.get(
        "/signals/{symbol}",
        response_model=SignalsPage,
        responses={404: {"model": ErrorBody, "description": "Not in the universe"}},
    )
    def signals_for(self, symbol: str) -> SignalsPage:
        """One symbol's active signals (empty when it has none)."""
        return self.core.signals_for(symbol)

    @web.get("/sectors", response_model=SectorsPage)
    def sectors(self, stance: Stance | None = None) -> SectorsPage:
        """The latest scan's sector overview: bullish, bearish or neutral per sector."""
        return self.core.sectors(stance)

    @web.get("/models", response_model=ModelsPage, responses=UNAVAILABLE)
    def models(self) -> ModelsPage:
        """Production and served version of every sector × horizon model."""
        return self.core.model_status()

    @web.get("/status")
    def status(self) -> dict[str, Any]:
        """The platform's state at a glance: what ``turbomode status --json`` prints."""
        from turbomode.status import platform_status

        return platform_status(self.core.settings).to_dict()

    @web.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "Not ready"}},
    )
    def health(self) -> JSONResponse:
        """Ready (200) only when a production model predicts and the online store answers;
        otherwise 503 with the failing check."""
        result = self.core.health()
        return JSONResponse(
            result.model_dump(mode="json"), status_code=200 if result.status == "ready" else 503
        )

    @web.post(
        "/admin/reload",
        response_model=ReloadResult,
        responses={
            401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
            403: {"model": ErrorBody, "description": "No admin token configured"},
        },
    )
    def admin_reload(self, authorization: Annotated[str | None, Header()] = None) -> ReloadResult:
        """Follow the production pointers and re-read the data files now (bearer token)."""
        self.core.authorize(authorization)
        return self.core.reload(force=True)

    # ---- performance pages (figures: turbomode.reports.performance) ----------------------
    @web.get("/performance/equity", responses=STORE_ERRORS)
    def performance_equity(self, wallet: str | None = None) -> dict[str, Any]:
        """A paper wallet's equity and drawdown beside SPY bought and held over the same days,
        their metrics, the P&L by month and the charts as SVG (default wallet: ``paper``)."""
        settings = self.core.settings
        return _from_store(
            settings,
            lambda store: performance.equity_page(
                store, settings, wallet, performance.benchmark_bars(settings)
            ),
        )

    @web.get("/performance/hit_rates", responses=STORE_ERRORS)
    def performance_hit_rates(self) -> dict[str, Any]:
        """Resolved signal outcomes' hit rate and mean return by horizon, sector and month."""
        return _from_store(self.core.settings, performance.hit_rates)

    @web.get("/performance/trades", responses=STORE_ERRORS)
    def performance_trades(
        self,
        wallet: str | None = None,
        min_confidence: Annotated[
            str | None, Query(description="Keep trades whose call had at least this (0–1).")
        ] = None,
        tier: str | None = None,
        regime: str | None = None,
        sector: str | None = None,
    ) -> dict[str, Any]:
        """A wallet's closed trades through what-if filters: how many remain, their hit rate
        and mean net return. A malformed or unknown filter value is a 400 that says why."""
        return _from_store(
            self.core.settings,
            lambda store: performance.trade_quality(
                store,
                performance.TradeFilter.parse(min_confidence, tier, regime, sector),
                wallet,
            ),
        )

    # ---- dashboard ---------------------------------------------------------------------
    @web.get("/dashboard", include_in_schema=False)
    def dashboard(self) -> FileResponse:
        return FileResponse(DASHBOARD / "index.html")

    @web.get("/dashboard/", include_in_schema=False)
    def dashboard_slash(self) -> RedirectResponse:
        return RedirectResponse("/dashboard")


SERVICE = cast("bentoml.Service[TurboMode]", TurboMode)  # what the decorators made of the class
API_BODIES = {
    api.route: body_schemas(api.input_spec, api.output_spec) for api in SERVICE.apis.values()
}
SERVICE.add_asgi_middleware(RequestGuard, max_body_bytes=SERVE.max_body_bytes, apis=API_BODIES)
quiet_client_errors()


def openapi_document() -> dict[str, Any]:
    """The document ``/docs.json`` serves (BentoML's, completed by the guard), built without a
    server: what the contract tests generate their requests from."""
    return document(json.loads(json.dumps(SERVICE.openapi_spec.asdict())), API_BODIES)
