"""Batch-job metrics reach a Pushgateway over real HTTP; an outage never fails the job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from turbomode.job_metrics import job_metrics


class _Capture(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Capture.received.append(("POST", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Capture.received.clear()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


def test_job_pushes_duration_success_and_rows(gateway: str) -> None:
    with job_metrics("ingest", gateway) as m:
        m.rows.labels(stage="clean").inc(123)
    method, path, body = _Capture.received[0]
    assert method == "POST" and path == "/metrics/job/turbomode_ingest"
    text = body.decode()
    assert 'turbomode_job_rows_total{stage="clean"} 123.0' in text
    assert "turbomode_job_success 1.0" in text
    assert "turbomode_job_duration_seconds" in text
    assert "turbomode_job_last_success_timestamp_seconds 1." in text


def test_a_failed_run_keeps_the_last_success_time(gateway: str) -> None:
    """POST replaces only what it carries; a failure must not carry last_success = 0."""
    with pytest.raises(RuntimeError), job_metrics("scan", gateway):
        raise RuntimeError("no prices")
    text = _Capture.received[0][2].decode()
    assert "turbomode_job_success 0.0" in text
    assert "turbomode_job_last_success_timestamp_seconds" not in text


def test_job_gauges_are_declared_once(gateway: str) -> None:
    with job_metrics("retrain", gateway) as m:
        m.gauge("turbomode_retrain_consecutive_refusals").set(2)
        assert m.gauge("turbomode_retrain_consecutive_refusals") is m.gauge(
            "turbomode_retrain_consecutive_refusals"
        )
        with pytest.raises(KeyError, match="undeclared job gauge 'turbomode_nope'"):
            m.gauge("turbomode_nope")
    assert "turbomode_retrain_consecutive_refusals 2.0" in _Capture.received[0][2].decode()


def test_failure_is_recorded_and_unreachable_gateway_does_not_raise() -> None:
    with pytest.raises(ValueError, match="boom"), job_metrics("scan", "127.0.0.1:9") as m:
        raise ValueError("boom")
    assert m.success._value.get() == 0
    with job_metrics("scan", None) as m2:
        pass
    assert m2.push(None) is False


# ---- a real Pushgateway and Prometheus (Debian's binaries, `make tools`) ---------------------


@pytest.mark.integration
def test_real_pushgateway_keeps_the_last_success_across_a_failed_run(tmp_path: Path) -> None:
    """The push semantics the stale-scan alert relies on, against the real server."""
    from tests.monitoring import pushgateway

    with pushgateway(tmp_path) as gw:
        address = gw.url.removeprefix("http://")
        with job_metrics("scan", address) as m:
            m.rows.labels(stage="signals").inc(7)
        first = _pushed(gw.url, "turbomode_job_last_success_timestamp_seconds", "turbomode_scan")
        with pytest.raises(RuntimeError), job_metrics("scan", address):
            raise RuntimeError("no prices")
        assert _pushed(gw.url, "turbomode_job_success", "turbomode_scan") == 0.0
        again = _pushed(gw.url, "turbomode_job_last_success_timestamp_seconds", "turbomode_scan")
        assert again == first > 1.7e9
        assert _pushed(gw.url, "turbomode_job_rows_total", "turbomode_scan") == 7.0


@pytest.mark.integration
def test_job_gauges_reach_prometheus_and_arm_the_alerts(tmp_path: Path) -> None:
    """Job → Pushgateway → a real Prometheus scraping it with the plain rules file: the rolling
    hit rate below the floor over enough outcomes arms TurboModeSignalHitRateLow (pending for
    its `for`), and the rules all evaluate without error."""
    from tests.monitoring import prometheus, pushgateway

    with pushgateway(tmp_path) as gw:
        address = gw.url.removeprefix("http://")
        with job_metrics("outcomes", address) as m:
            m.gauge("turbomode_signal_hit_rate").labels(horizon="1").set(0.2)
            m.gauge("turbomode_signal_outcomes_window").labels(horizon="1").set(40)
            m.gauge("turbomode_signal_hit_rate").labels(horizon="2").set(0.6)
            m.gauge("turbomode_signal_outcomes_window").labels(horizon="2").set(40)
        with prometheus(tmp_path, "127.0.0.1:9", address) as prom:
            (rate,) = prom.wait_for('turbomode_signal_hit_rate{horizon="1"}')
            assert rate["metric"]["job"] == "turbomode_outcomes"  # honor_labels kept the job
            assert float(rate["value"][1]) == pytest.approx(0.2)
            pending = prom.wait_for('ALERTS{alertname="TurboModeSignalHitRateLow"}')
            assert [(a["metric"]["horizon"], a["metric"]["alertstate"]) for a in pending] == [
                ("1", "pending")
            ]
            rules = prom.rules()
            assert len(rules) >= 8
            assert all(r["health"] in ("ok", "unknown") for r in rules), rules


def _pushed(url: str, name: str, job: str) -> float:
    """A metric's value as the Pushgateway exposes it for ``job``."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("job") == job:
                return float(sample.value)
    raise AssertionError(f"{name}{{job={job!r}}} not on the gateway")
