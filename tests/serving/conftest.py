"""Fixtures of the serving tests: one built market per session, and the real service started
on it as a subprocess (``python -m turbomode.cli.serve``) on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serving.builder import ServedMarket, build_market

ADMIN_TOKEN = "test-admin-token"
ARTIFACTS = Path(__file__).parent / "artifacts"
START_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def market(tmp_path_factory: pytest.TempPathFactory) -> ServedMarket:
    return build_market(tmp_path_factory.mktemp("served"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(market: ServedMarket, home: Path, **extra: str) -> dict[str, str]:
    """This environment without any TURBOMODE_* of the caller's (they would override the
    market's settings file), plus the market's settings and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURBOMODE_")}
    env.update(market.env)
    env.update(
        {
            "TURBOMODE_SERVE_ADMIN_TOKEN": ADMIN_TOKEN,
            "TURBOMODE_SERVE_WATCH_INTERVAL_S": "0.5",
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "True",
        }
    )
    env.update(extra)
    return env


@dataclass
class Server:
    """A running service; every response it gives through here is recorded."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    session: requests.Session = field(default_factory=requests.Session)
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=60, **kw)
        route = path.split("?")[0]
        self.seen.append((method.lower(), route, response.status_code))
        return response

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def start_server(env: dict[str, str], workdir: Path, port: int | None = None) -> Server:
    """``python -m turbomode.cli.serve`` in its own process group; returns once /readyz is 200."""
    port = port or free_port()
    log = workdir / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "turbomode.cli.serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_ready(server: Server) -> None:
    """Until /readyz is 200; fails with the log's tail if the server exits or never gets ready."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise RuntimeError(f"the service exited with {code}:\n{server.log_tail()}")
        try:
            if requests.get(server.url + "/readyz", timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or busy loading its first model
        time.sleep(0.5)
    raise RuntimeError(
        f"the service was not ready in {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )


def stop_server(server: Server) -> None:
    """SIGTERM to the server's own process group (the arbiter and its workers), then SIGKILL."""
    server.session.close()
    if server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def server(market: ServedMarket, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("server")
    running = start_server(server_env(market, workdir / "bentoml"), workdir)
    try:
        yield running
    finally:
        stop_server(running)
