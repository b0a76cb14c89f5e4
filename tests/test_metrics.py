"""Batch-job metrics reach a Pushgateway over real HTTP; an outage never fails the job."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from turbomode.metrics import job_metrics


class _Capture(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Capture.received.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_job_pushes_duration_success_and_rows() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Capture.received.clear()
        with job_metrics("ingest", f"127.0.0.1:{server.server_port}") as m:
            m.rows.labels(stage="clean").inc(123)
        method, path, body = _Capture.received[0]
        assert method == "PUT" and path == "/metrics/job/turbomode_ingest"
        text = body.decode()
        assert 'turbomode_job_rows_total{stage="clean"} 123.0' in text
        assert "turbomode_job_success 1.0" in text
        assert "turbomode_job_duration_seconds" in text
    finally:
        server.shutdown()


def test_failure_is_recorded_and_unreachable_gateway_does_not_raise() -> None:
    with pytest.raises(ValueError, match="boom"), job_metrics("scan", "127.0.0.1:9") as m:
        raise ValueError("boom")
    assert m.success._value.get() == 0
    with job_metrics("scan", None) as m2:
        pass
    assert m2.push(None) is False
