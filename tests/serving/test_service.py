"""The real service on 127.0.0.1 (``turbomode serve`` in a subprocess) over a market built by
the pipeline: every endpoint answers as the scan decided, bad requests are 4xx with a message
(never 5xx), the OpenAPI document lists every response given, metrics are exported, and a
promotion under load is served without a restart and without a failed request."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests

from tests.serving.builder import NO_MODEL, ONLY_1D, ServedMarket
from tests.serving.conftest import ADMIN_TOKEN, Server
from turbomode.config import Settings
from turbomode.feature_store import FeatureLayout, model_features
from turbomode.signals.rules import signals_to_frame, threshold_basis

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_FEATURES = len(model_features(Settings()))  # what the served models were trained on


def fresh_signals(market: ServedMarket) -> list[Any]:
    return [s for s in market.scan.active if s.signal_date == market.scan.scan_date]


def scored_symbol(market: ServedMarket, sector: str = "Information Technology") -> str:
    failed = set(market.scan.failures)
    return next(s for s in market.symbols_in(sector) if s not in failed)


# --------------------------------------------------------------------------- health


def test_health_readiness_and_liveness(server: Server, market: ServedMarket) -> None:
    health = server.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ready"
    assert {k for k, v in body["checks"].items() if v["ok"]} >= {"market", "models", "online_store"}
    assert body["scan_date"] == str(market.scan.scan_date)
    assert server.get("/readyz").status_code == 200
    assert server.get("/livez").status_code == 200


# --------------------------------------------------------------------------- predictions


def test_predict_gives_what_the_scan_decided(server: Server, market: ServedMarket) -> None:
    fresh = fresh_signals(market)
    assert fresh, "the fixture's last scan must have fresh signals"
    for s in fresh:
        r = server.post("/predict", json={"symbol": s.symbol.lower(), "horizon": s.horizon})
        assert r.status_code == 200, r.text
        p = r.json()
        assert (p["symbol"], p["horizon"], p["signal"]) == (s.symbol, s.horizon, s.side)
        for name in ("p_buy", "p_hold", "p_sell", "confidence", "stop", "target", "close"):
            assert p[name] == pytest.approx(getattr(s, name), rel=1e-9, abs=1e-12), name
        assert p["entry_low"] == pytest.approx(s.entry_low)
        assert p["model_version"] == s.model_version
        assert p["price_date"] == str(market.scan.scan_date)
        assert p["features_as_of"].startswith(str(market.scan.scan_date))
        limits = {k: p["thresholds"][k] for k in ("buy", "sell")}
        assert limits == pytest.approx(market.scan.thresholds)
        assert p["thresholds"]["on"] == threshold_basis(market.settings.signals)

    scores = market.scan.scores
    called = {(s.symbol, s.horizon) for s in market.scan.fresh}
    hold = scores[
        [(a, b) not in called for a, b in zip(scores["symbol"], scores["horizon"], strict=True)]
    ]
    row = hold.iloc[0]
    r = server.post("/predict", json={"symbol": row["symbol"], "horizon": int(row["horizon"])})
    p = r.json()
    assert (r.status_code, p["signal"], p["stop"], p["target"]) == (200, "HOLD", None, None)
    assert p["p_buy"] == pytest.approx(row["p_buy"]) and p["confidence"] == pytest.approx(
        row["p_hold"]
    )


def test_predict_batch_equals_single_predictions(server: Server, market: ServedMarket) -> None:
    symbols = [*sorted(market.members["symbol"]), "NOPE"]
    r = server.post("/predict_batch", json={"symbols": symbols})
    assert r.status_code == 200, r.text
    body = r.json()
    got = {(p["symbol"], p["horizon"]): p for p in body["predictions"]}
    scores = market.scan.scores
    assert set(got) == set(zip(scores["symbol"], scores["horizon"].astype(int), strict=True))
    for (sym, h), p in list(got.items())[:12]:
        single = server.post("/predict", json={"symbol": sym, "horizon": h}).json()
        assert single == p
    errors = {(e["symbol"], e["horizon"]): e["error"] for e in body["errors"]}
    assert errors[("NOPE", None)].startswith("unknown symbol 'NOPE'")
    for sym, why in market.scan.failures.items():
        if market.sector_of(sym) == NO_MODEL:  # named per horizon asked for
            for h in (1, 2, 5):
                assert errors[(sym, h)] == f"no production model for {NO_MODEL}/{h}d"
        else:
            assert errors[(sym, None)] == why
    energy = scored_symbol(market, ONLY_1D)
    assert errors[(energy, 2)] == f"no production model for {ONLY_1D}/2d"
    assert (energy, 1) in got

    one = server.post("/predict_batch", json={"symbols": [energy, energy], "horizons": [1]})
    assert [(p["symbol"], p["horizon"]) for p in one.json()["predictions"]] == [(energy, 1)]


def test_predict_features_scores_a_raw_vector_like_predict(
    server: Server, market: ServedMarket
) -> None:
    sym = scored_symbol(market)
    vector = market.newest_vector(sym)  # every registered feature, as the online store holds it
    names = FeatureLayout.from_registry().all
    keep = [names.index(f) for f in model_features(Settings())]  # the model's, in its order
    row = [None if v != v else float(v) for v in vector[keep].tolist()]  # NaN → null
    body = {"sector": market.sector_of(sym), "horizon": 1, "features": [row, row]}
    r = server.post("/predict_features", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    single = server.post("/predict", json={"symbol": sym, "horizon": 1}).json()
    assert out["model_version"] == single["model_version"] and out["n_features"] == N_FEATURES
    assert len(out["predictions"]) == 2
    for name in ("p_buy", "p_hold", "p_sell", "signal", "confidence"):
        assert out["predictions"][0][name] == pytest.approx(single[name]), name


# --------------------------------------------------------------------------- bad requests


def _features(n: int, value: str = "0.0") -> str:
    return "[" + ",".join([value] * n) + "]"


NAN_BODY = '{"sector": "Energy", "horizon": 1, "features": [[1.0, NaN]]}'
INF_BODY = '{"sector": "Energy", "horizon": 1, "features": [[1.0, Infinity]]}'
HUGE_BODY = '{"sector": "Energy", "horizon": 1, "features": [[1.0, 1e39]]}'
BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("post", "/predict", {"symbol": "NOPE", "horizon": 1}, 404, "unknown symbol 'NOPE'"),
    ("post", "/predict", {"symbol": "IT01", "horizon": 3}, 400, "Input should be 1, 2 or 5"),
    ("post", "/predict", {"symbol": "IT01"}, 400, "Field required"),
    ("post", "/predict", {"symbol": "IT01", "horizon": "soon"}, 400, "horizon: Input should be"),
    ("post", "/predict", {"symbol": "", "horizon": 1}, 400, "at least 1 character"),
    ("post", "/predict", '{"symbol": "IT01", "horizon": 1', 400, "Invalid JSON"),
    ("post", "/predict_batch", {"symbols": []}, 400, "at least 1 item"),
    ("post", "/predict_batch", {"symbols": ["IT01"], "horizons": [4]}, 400, "1, 2 or 5"),
    ("post", "/predict_batch", {"symbols": [f"S{i}" for i in range(1001)]}, 400, "at most 1000"),
    ("post", "/predict_features", NAN_BODY, 400, "finite number"),
    ("post", "/predict_features", INF_BODY, 400, "finite number"),
    ("post", "/predict_features", HUGE_BODY, 400, "1e+39 is beyond float32 (±3.4e38)"),
    (
        "post",
        "/predict_features",
        {"sector": "Energy", "horizon": 1, "features": [[0.0, 1.0]]},
        400,
        f"have 2 values; the Energy/1d model takes {N_FEATURES}",
    ),
    ("post", "/predict_features", {"sector": "Nope", "horizon": 1, "features": [[0.0]]}, 400, ""),
    (
        "post",
        "/predict_features",
        '{"sector": "Energy", "horizon": 5, "features": [' + _features(N_FEATURES) + "]}",
        404,
        "no production model for Energy/5d",
    ),
    ("get", "/signals?side=HOLD", None, 422, "'BUY' or 'SELL'"),
    ("get", "/signals?cap_class=huge", None, 422, "large"),
    ("get", "/signals?sector=Nope", None, 400, "unknown sector 'Nope'"),
    ("get", "/signals?limit=0", None, 422, "greater than or equal to 1"),
    ("get", "/signals/NOPE", None, 404, "unknown symbol 'NOPE'"),
    ("get", "/signals/A%0AB", None, 404, "Not Found"),  # no route matches a newline
    ("get", "/sectors?stance=up", None, 422, "bullish"),
    ("post", "/admin/reload", None, 401, "bearer token"),
]


def _call(server: Server, method: str, path: str, body: Any, **kw: Any) -> requests.Response:
    if body is None:
        return server.request(method, path, **kw)
    if isinstance(body, str):
        headers = {"content-type": "application/json", **kw.pop("headers", {})}
        return server.request(method, path, data=body, headers=headers, **kw)
    return server.request(method, path, json=body, **kw)


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_that_says_why(
    server: Server, method: str, path: str, body: Any, status: int, message: str
) -> None:
    r = _call(server, method, path, body)
    assert r.status_code == status, r.text
    assert message in r.text
    body_json = r.json()
    assert isinstance(body_json, dict)  # an object, never BentoML's list-wrapped [{"error": …}]
    if status == 422:  # FastAPI's documented HTTPValidationError
        assert isinstance(body_json["detail"], list)
    else:  # ErrorBody: a one-line error, and a detail string when there is one
        assert set(body_json) <= {"error", "detail"} and isinstance(body_json["error"], str)
        assert isinstance(body_json.get("detail", ""), str)


def test_unscorable_symbols_are_404_with_the_scans_reason(
    server: Server, market: ServedMarket
) -> None:
    for sym, why in market.scan.failures.items():
        r = server.post("/predict", json={"symbol": sym, "horizon": 1})
        if market.sector_of(sym) == NO_MODEL:
            why = f"no production model for {NO_MODEL}/1d"
        assert (r.status_code, r.json()) == (404, {"error": why})
    energy = scored_symbol(market, ONLY_1D)
    r = server.post("/predict", json={"symbol": energy, "horizon": 5})
    assert (r.status_code, r.json()["error"]) == (404, f"no production model for {ONLY_1D}/5d")
    assert any(market.sector_of(s) == NO_MODEL for s in market.scan.failures)


def test_admin_reload_needs_the_token(server: Server) -> None:
    wrong = server.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
    ok = server.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"swaps": [], "market_reloaded": True, "scan_reloaded": True}


# --------------------------------------------------------------------------- signals


def test_signals_are_the_latest_scan_filtered_and_ranked(
    server: Server, market: ServedMarket
) -> None:
    frame = signals_to_frame(market.scan.active, market.scan.scan_date, market.settings.signals)
    everything = server.get("/signals").json()
    assert everything["scan_date"] == str(market.scan.scan_date)
    assert everything["run_id"] == market.scan.run_id
    assert everything["total"] == len(frame) == len(everything["signals"]) > 0
    eff = [s["effective_confidence"] for s in everything["signals"]]
    assert eff == sorted(eff, reverse=True)
    assert {s["age_bucket"] for s in everything["signals"]} == set(frame["age_bucket"])

    for cap, side in sorted(set(zip(frame["cap_class"], frame["side"], strict=True))):
        page = server.get(f"/signals?cap_class={cap}&side={side}&limit=3").json()
        want = frame[(frame["cap_class"] == cap) & (frame["side"] == side)]
        assert page["total"] == len(want)
        assert len(page["signals"]) == min(3, len(want))
        top = want.sort_values("effective_confidence", ascending=False).head(3)
        assert [s["effective_confidence"] for s in page["signals"]] == pytest.approx(
            top["effective_confidence"].tolist()
        )
    sector = str(frame["sector"].iloc[0])
    page = server.get("/signals", params={"sector": sector, "horizon": 1}).json()
    assert page["total"] == int(((frame["sector"] == sector) & (frame["horizon"] == 1)).sum())

    sym = str(frame["symbol"].iloc[0])
    mine = server.get(f"/signals/{sym.lower()}").json()
    assert {(s["symbol"], s["horizon"]) for s in mine["signals"]} == set(
        zip(
            frame.loc[frame["symbol"] == sym, "symbol"],
            frame.loc[frame["symbol"] == sym, "horizon"],
            strict=True,
        )
    )
    quiet = next(s for s in market.members["symbol"] if s not in set(frame["symbol"]))
    assert server.get(f"/signals/{quiet}").json()["signals"] == []


def test_sectors_are_the_scans_overview(server: Server, market: ServedMarket) -> None:
    page = server.get("/sectors").json()
    want = market.scan.sectors
    assert [s["sector"] for s in page["sectors"]] == want["sector"].tolist()
    assert [s["stance"] for s in page["sectors"]] == want["stance"].tolist()
    for stance in ("bullish", "bearish", "neutral"):
        got = server.get(f"/sectors?stance={stance}").json()["sectors"]
        assert [s["sector"] for s in got] == want.loc[want["stance"] == stance, "sector"].tolist()


# --------------------------------------------------------------------------- operations


def test_metrics_are_exported(server: Server, market: ServedMarket) -> None:
    sym = scored_symbol(market)
    server.post("/predict", json={"symbol": sym, "horizon": 1})
    server.post("/predict", json={"symbol": "NOPE", "horizon": 1})
    text = server.get("/metrics").text
    families = set(re.findall(r"^(turbomode_\w+?)(?:_total|_bucket|_count|_sum)?[{ ]", text, re.M))
    assert families >= {
        "turbomode_predictions",
        "turbomode_prediction_failures",
        "turbomode_prediction_memo",
        "turbomode_model_info",
        "turbomode_model_load_seconds",
        "turbomode_models_loaded",
        "turbomode_feature_age_seconds",
        "turbomode_feature_timestamp_seconds",
        "turbomode_signals_scan_timestamp_seconds",
        "turbomode_serving_ready",
    }
    assert re.search(
        r'^turbomode_predictions_total\{endpoint="predict",horizon="1",'
        r'sector="Information Technology",signal="\w+"\} [1-9]',
        text,
        re.M,
    )
    assert re.search(r'turbomode_prediction_failures_total\{.*reason="unknown_symbol"', text)
    assert "turbomode_serving_ready 1.0" in text
    assert re.search(r"^bentoml_service_request_total\{", text, re.M)


def test_models_lists_production_and_served_versions(server: Server, market: ServedMarket) -> None:
    sym = scored_symbol(market)
    server.post("/predict", json={"symbol": sym, "horizon": 1})
    models = {m["key"]: m for m in server.get("/models").json()["models"]}
    key = f"{market.sector_of(sym)}/1d"
    assert models[key]["served_version"] == models[key]["production_version"] is not None
    assert models[f"{NO_MODEL}/1d"]["production_version"] is None
    assert models[f"{ONLY_1D}/2d"]["production_version"] is None


def test_openapi_documents_every_route_and_status(server: Server) -> None:
    spec = server.get("/docs.json").json()
    paths = spec["paths"]
    for route in ("/predict", "/predict_batch", "/predict_features", "/explain", "/admin/reload"):
        assert "post" in paths[route], route
    for route in (
        "/signals",
        "/signals/{symbol}",
        "/sectors",
        "/models",
        "/status",
        "/health",
        "/metrics",
    ):
        assert "get" in paths[route], route
    for route in ("/readyz", "/livez"):
        assert route in paths
    for method, path, body, _status, _msg in BAD_REQUESTS:
        _call(server, method, path, body)
    templates = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$"), p) for p in paths]
    undocumented = []
    for method, route, status in server.seen:
        if route.startswith(("/dashboard", "/docs.json")):
            continue
        template = next((p for rx, p in templates if rx.match(route)), None)
        if template is None or str(status) not in paths[template][method]["responses"]:
            undocumented.append((method, route, status))
    assert not undocumented, f"responses the OpenAPI document does not list: {undocumented}"
    predict = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(predict["required"]) == {"symbol", "horizon"}
    assert predict["properties"]["horizon"]["enum"] == [1, 2, 5]


# --------------------------------------------------------------------------- explanations


def test_explain_answers_what_the_scan_stored_and_signals_carry_it(
    server: Server, market: ServedMarket
) -> None:
    from turbomode.store import SignalStore

    day = market.scan.scan_date
    store = SignalStore(market.settings.stores.signals_url)
    try:
        stored = store.explanations(since=day)
    finally:
        store.dispose()
    fresh = fresh_signals(market)
    assert fresh and set(stored) == {(s.symbol, s.horizon, day) for s in fresh}
    for s in fresh:
        r = server.post("/explain", json={"symbol": s.symbol.lower(), "horizon": s.horizon})
        assert r.status_code == 200, r.text
        got, want = r.json(), stored[(s.symbol, s.horizon, day)]
        assert (got["symbol"], got["horizon"]) == (s.symbol, s.horizon)
        assert got["model_version"] == want["model_version"] == s.model_version
        assert got["value"] == pytest.approx(want["value"], abs=1e-12)
        assert got["value"] == pytest.approx(s.p_buy - s.p_sell, abs=1e-9)
        assert got["base"] == pytest.approx(want["base"], abs=1e-12)
        assert got["contributions"] == pytest.approx(want["contributions"], abs=1e-9)
        assert [t["feature"] for t in got["top"]] == [t["feature"] for t in want["top"]]
        for a, b in zip(got["top"], want["top"], strict=True):
            assert a == {**b, "contribution": pytest.approx(b["contribution"], abs=1e-9)}
        page = server.get(f"/signals/{s.symbol}").json()
        listed = next(x for x in page["signals"] if x["horizon"] == s.horizon)
        assert listed["explanation"]["top"] == want["top"]
    # any symbol, signal or not: its contributions sum to its score
    other = scored_symbol(market)
    r = server.post("/explain", json={"symbol": other, "horizon": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["base"] + sum(body["contributions"].values()) == pytest.approx(
        body["value"], abs=1e-6
    )
    assert len(body["top"]) == 5 and all(0 <= t["percentile"] <= 100 for t in body["top"])
    assert server.post("/explain", json={"symbol": "NOPE", "horizon": 1}).status_code == 404


# --------------------------------------------------------------------------- model swap


def test_a_promotion_under_load_is_served_without_a_failed_request(
    server: Server, market: ServedMarket
) -> None:
    """Requests run from four threads while a new version is promoted: the watcher loads it
    beside the old one and swaps; every request succeeds, answers switch to the new version
    and stay there, and the old version comes back the same way after a rollback."""
    sym = scored_symbol(market)
    key = f"{market.sector_of(sym)}/1d"
    old = market.registry.production(key)
    assert old is not None
    results: list[tuple[float, int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set() and len(results) < 20_000:
            try:
                r = session.post(
                    server.url + "/predict", json={"symbol": sym, "horizon": 1}, timeout=30
                )
                entry = (time.monotonic(), r.status_code, r.json().get("model_version", r.text))
            except (requests.RequestException, json.JSONDecodeError) as exc:
                entry = (time.monotonic(), 0, repr(exc))
            with lock:
                results.append(entry)

    def first_new_at(version: str) -> float | None:
        with lock:
            return next((t for t, _, v in results if v == version), None)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(results) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        new = market.register(key, 5)  # a different ensemble: different probabilities
        promoted_at = time.monotonic()
        while time.monotonic() < deadline:  # until the new version has served for 2 s
            seen = first_new_at(new)
            if seen is not None and time.monotonic() - seen > 2:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    try:
        assert len(results) > 200
        failures = [r for r in results if r[1] != 200]
        assert not failures, f"{len(failures)} failed requests during the swap: {failures[:3]}"
        versions = Counter(v for _, _, v in results)
        assert set(versions) == {old, new}
        ordered = [v for _, _, v in sorted(results)]
        first_new = ordered.index(new)
        assert all(v == new for v in ordered[first_new + 8 :])  # in-flight stragglers only
        served_at = first_new_at(new)
        assert served_at is not None and served_at - promoted_at < 10  # 0.5 s watch + a load
        models = {m["key"]: m for m in server.get("/models").json()["models"]}
        assert models[key]["served_version"] == models[key]["production_version"] == new
    finally:
        market.registry.rollback(key)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = server.post("/predict", json={"symbol": sym, "horizon": 1}).json()
            if now["model_version"] == old:
                break
            time.sleep(0.2)
        assert now["model_version"] == old
