"""A real Prometheus (Debian's binary) scrapes the running service with the project's own
configuration and rules file: the custom metrics and the request histogram the alert rules
read return data, and every rule evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitoring import prometheus, pushgateway
from tests.serving.builder import ServedMarket
from tests.serving.conftest import Server

pytestmark = pytest.mark.integration


def test_prometheus_scrapes_the_service(
    server: Server, market: ServedMarket, tmp_path: Path
) -> None:
    from turbomode.job_metrics import job_metrics

    s = market.scan.fresh[0]
    for _ in range(5):
        r = server.post("/predict", json={"symbol": s.symbol, "horizon": s.horizon})
        assert r.status_code == 200, r.text
    assert server.post("/predict", json={"symbol": "NOPE", "horizon": 1}).status_code == 404
    with pushgateway(tmp_path) as gw:
        address = gw.url.removeprefix("http://")
        with job_metrics("scan", address) as m:
            m.rows.labels(stage="signals").inc(3)
        with prometheus(tmp_path, server.url.removeprefix("http://"), address) as prom:
            served = prom.wait_for(
                'sum by (signal, horizon) (turbomode_predictions_total{job="turbomode-serving",'
                ' endpoint="predict"})'
            )
            by_signal = {(r["metric"]["signal"], r["metric"]["horizon"]): r for r in served}
            assert float(by_signal[(s.side, str(s.horizon))]["value"][1]) >= 5
            # The histogram the latency alert reads, by the endpoint label it groups on.
            p99 = prom.wait_for(
                "histogram_quantile(0.99, sum by (le, endpoint) (rate("
                'bentoml_service_request_duration_seconds_bucket{job="turbomode-serving"}[1m])))'
            )
            assert "/predict" in {r["metric"]["endpoint"] for r in p99}
            codes = prom.wait_for(
                "sum by (http_response_code) (bentoml_service_request_total"
                '{job="turbomode-serving", endpoint="/predict"})'
            )
            assert {r["metric"]["http_response_code"] for r in codes} >= {"200", "404"}
            (age,) = prom.wait_for("turbomode_feature_age_seconds")
            assert float(age["value"][1]) > 0
            (scan,) = prom.wait_for(
                'turbomode_job_last_success_timestamp_seconds{job="turbomode_scan"}'
            )
            assert float(scan["value"][1]) > 1.7e9
            rules = prom.rules()
            assert {r["name"] for r in rules} >= {"TurboModeServingLatencyHigh"}
            assert all(r["health"] in ("ok", "unknown") for r in rules), rules
