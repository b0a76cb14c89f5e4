"""A real Prometheus and Pushgateway for tests (Debian's binaries, ``make tools``).

Each runs as a subprocess on a free port of 127.0.0.1 with its data in a temporary folder.
The Prometheus configuration is the project's own ``monitoring/prometheus/prometheus.yml`` with
the targets pointed at the test's service and gateway, a 1 s scrape and evaluation interval,
and the plain rules file beside it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.conftest import REPO, need
from tests.deploy.conftest import find_tool

CONFIG = REPO / "monitoring" / "prometheus" / "prometheus.yml"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_binary(name: str) -> str:
    path = find_tool(name)
    need(path is not None, f"{name} is not in .tools/bin or on PATH (run `make tools`)")
    assert path is not None
    return path


@dataclass
class Daemon:
    """A started binary: its base URL, process and log file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@contextmanager
def _daemon(cmd: list[str], port: int, workdir: Path, name: str) -> Iterator[Daemon]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{daemon.log_tail()}")
            try:
                if requests.get(daemon.url + "/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} not ready in {START_TIMEOUT_S:.0f} s:\n{daemon.log_tail()}"
                )
            time.sleep(0.2)
        yield daemon
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def pushgateway(workdir: Path) -> Iterator[Daemon]:
    """A Pushgateway keeping its metrics in memory only."""
    binary = require_binary("prometheus-pushgateway")
    port = _free_port()
    cmd = [binary, f"--web.listen-address=127.0.0.1:{port}"]
    with _daemon(cmd, port, workdir, "pushgateway") as daemon:
        yield daemon


def prometheus_config(serving: str, gateway: str, rules_dir: Path | None = None) -> dict[str, Any]:
    """The project's prometheus.yml, scraping ``serving`` and ``gateway`` (host:port) each
    second, with the rules file by absolute path (from ``rules_dir`` when a test edits it)."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str((rules_dir or CONFIG.parent) / f) for f in config["rule_files"]]
    targets = {"turbomode-serving": serving, "pushgateway": gateway}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@dataclass
class Prometheus(Daemon):
    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` returns now (a query error fails)."""
        response = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The first non-empty result of ``expr`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                targets = requests.get(self.url + "/api/v1/targets", timeout=10).json()
                raise AssertionError(f"no data for {expr} in {timeout:.0f} s; targets: {targets}")
            time.sleep(0.5)

    def rules(self) -> list[dict[str, Any]]:
        body = requests.get(self.url + "/api/v1/rules", timeout=10).json()
        return [r for g in body["data"]["groups"] for r in g["rules"]]


@contextmanager
def prometheus(
    workdir: Path, serving: str, gateway: str, rules_dir: Path | None = None
) -> Iterator[Prometheus]:
    """A Prometheus scraping the service at ``serving`` and the Pushgateway at ``gateway``."""
    binary = require_binary("prometheus")
    port = _free_port()
    config = workdir / "prometheus.yml"
    text = yaml.safe_dump(prometheus_config(serving, gateway, rules_dir), sort_keys=False)
    config.write_text(text)
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with _daemon(cmd, port, workdir, "prometheus") as daemon:
        yield Prometheus(daemon.url, daemon.process, daemon.log)
