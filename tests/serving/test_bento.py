"""bentofile.yaml: its pins agree with the lock, and ``bentoml build -f bentofile.yaml src``
makes a Bento that holds the service, the dashboard and the migrations and serves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.serving.builder import ServedMarket
from tests.serving.conftest import Server, free_port, server_env, stop_server, wait_ready
from turbomode.cli import serve as cli_serve


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[_canonical(name)] = version.strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def test_bentofile_pins_are_the_locked_versions() -> None:
    config = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert config["service"] == cli_serve.SERVICE
    lock = _lock()
    packages = config["python"]["packages"]
    assert packages, "bentofile.yaml lists the runtime packages"
    for spec in packages:
        name, _, version = spec.partition("==")
        assert lock.get(_canonical(name)) == version, f"{spec} differs from constraints.txt"


@pytest.mark.slow
@pytest.mark.integration
def test_bentoml_build_makes_a_bento_that_serves(market: ServedMarket, tmp_path: Path) -> None:
    home = tmp_path / "bentoml"
    env = server_env(market, home)
    build = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "bentofile.yaml", "src"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (bento,) = [p for p in (home / "bentos" / "turbomode").iterdir() if p.is_dir()]
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == cli_serve.SERVICE
    routes = {r["route"] for r in info["schema"]["routes"]}
    assert {"/predict", "/predict_batch", "/predict_features"} <= routes
    src = bento / "src" / "turbomode"
    for part in (
        "serving/service.py",
        "serving/dashboard/index.html",
        "serving/dashboard/static/app.js",
        "store/migrations/env.py",
        "store/migrations/script.py.mako",
    ):
        assert (src / part).is_file(), part
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "feast[duckdb,postgres,redis]==" in requirements

    port = free_port()
    log = tmp_path / "bento.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", str(bento), "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(running)
        r = running.get("/signals?limit=1")
        assert r.status_code == 200, running.log_tail()
        assert r.json()["scan_date"] == str(market.scan.scan_date)
    finally:
        stop_server(running)
