"""Batch-job metrics reach a Pushgateway over real HTTP; an outage never fails the job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from turbomode.metrics import job_metrics


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


def test_failure_is_recorded_and_unreachable_gateway_does_not_raise() -> None:
    with pytest.raises(ValueError, match="boom"), job_metrics("scan", "127.0.0.1:9") as m:
        raise ValueError("boom")
    assert m.success._value.get() == 0
    with job_metrics("scan", None) as m2:
        pass
    assert m2.push(None) is False
