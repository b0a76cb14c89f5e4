"""A real Prometheus, Pushgateway and Alertmanager for tests (Debian's binaries, ``make
tools``), and the local receivers notifications go to: an HTTP server that records what is
posted to it (webhooks, Slack) and an SMTP server that records the mail.

Each runs on a free port of 127.0.0.1 with its data in a temporary folder. The Prometheus
configuration is the project's own ``monitoring/prometheus/prometheus.yml`` with the targets
pointed at the test's service, gateway and Alertmanager, a 1 s scrape and evaluation interval,
and the plain rules file beside it; the Alertmanager's is the project's
``monitoring/alertmanager/alertmanager.yml`` as the test adapts it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.conftest import REPO, need
from tests.deploy.conftest import find_tool

CONFIG = REPO / "monitoring" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
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


def prometheus_config(
    serving: str, gateway: str, rules_dir: Path | None = None, alertmanager: str | None = None
) -> dict[str, Any]:
    """The project's prometheus.yml, scraping ``serving`` and ``gateway`` (host:port) each
    second, with the rules file by absolute path (from ``rules_dir`` when a test edits it),
    sending alerts to ``alertmanager`` (host:port; none when not given)."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str((rules_dir or CONFIG.parent) / f) for f in config["rule_files"]]
    targets = {"turbomode-serving": serving, "pushgateway": gateway}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    (manager,) = config["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [alertmanager] if alertmanager else []}]
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
    workdir: Path,
    serving: str,
    gateway: str,
    rules_dir: Path | None = None,
    alertmanager: str | None = None,
) -> Iterator[Prometheus]:
    """A Prometheus scraping the service at ``serving`` and the Pushgateway at ``gateway``,
    alerting ``alertmanager`` when given."""
    binary = require_binary("prometheus")
    port = _free_port()
    config = workdir / "prometheus.yml"
    text = yaml.safe_dump(
        prometheus_config(serving, gateway, rules_dir, alertmanager), sort_keys=False
    )
    config.write_text(text)
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with _daemon(cmd, port, workdir, "prometheus") as daemon:
        yield Prometheus(daemon.url, daemon.process, daemon.log)


@contextmanager
def alertmanager(workdir: Path, config: dict[str, Any]) -> Iterator[Daemon]:
    """An Alertmanager with ``config`` (the project's file as the test adapted it), in
    ``workdir``; no cluster peers."""
    binary = require_binary("alertmanager")
    port = _free_port()
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        binary,
        f"--config.file={path}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with _daemon(cmd, port, workdir, "alertmanager") as daemon:
        yield daemon


# ---- receivers -------------------------------------------------------------------------------


@dataclass
class Posted:
    """What an HTTP client posted: path, headers and the body (parsed when JSON)."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server on ``url`` recording every POST, for webhooks and Slack."""

    url: str
    posted: list[Posted] = field(default_factory=list)

    def wait(self, count: int = 1, timeout: float = 30.0) -> list[Posted]:
        """The posts so far, once there are at least ``count`` (fails after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while len(self.posted) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.posted)} of {count} posts in {timeout:.0f} s")
            time.sleep(0.2)
        return list(self.posted)


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.posted.append(Posted(self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """A local SMTP server on ``host``:``port`` keeping each message it accepts, and the login
    it was given (AUTH PLAIN or LOGIN, accepted for ``user``/``password`` only)."""

    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    def wait(self, count: int = 1, timeout: float = 30.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages)} of {count} mails in {timeout:.0f} s")
            time.sleep(0.2)
        return list(self.messages)


@contextmanager
def smtp_server(user: str | None = None, password: str | None = None) -> Iterator[Mailbox]:
    """aiosmtpd's SMTP server in a thread; with ``user``, it requires that login (over plain
    SMTP: it is local)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    port = _free_port()
    box = Mailbox("127.0.0.1", port)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
            box.messages.append(message_from_bytes(envelope.original_content))
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if isinstance(data, LoginPassword):
            login = (data.login.decode(), data.password.decode())
            box.logins.append(login)
            return AuthResult(success=login == (user, password))
        return AuthResult(success=False)

    # PLAIN only: aiosmtpd's LOGIN challenges ("User Name") are not the ones Go's clients expect.
    auth = (
        {
            "authenticator": authenticate,
            "auth_require_tls": False,
            "auth_exclude_mechanism": ["LOGIN"],
        }
        if user
        else {}
    )
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, auth_required=bool(user), **auth
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
