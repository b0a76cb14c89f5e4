"""A real multi-node Ray on this machine for the tests of the Ray paths (the feature build,
Feast's Ray offline store): a head and a worker node, one CPU each, so work really runs on both
nodes and moves through the object store between them.

Each node is a ``ray start --block`` in a process group of its own, stopped by that group in
teardown (``ray stop`` would also stop any other Ray on the machine). The tests that use it are
marked ``ray_cluster`` (tests/conftest.py) and ``make test`` runs them after the parallel part
of the suite, alone: a second Ray starting on the same machine at the same time (another
worker's local Ray) has made both fail to start.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import turbomode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str | None:
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else shutil.which("ray")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


CLIENT_PORT = [0]
"""The Ray Client port of the session's head (set when the cluster starts)."""


def _has_client() -> bool:
    if importlib.util.find_spec("grpc") is None:
        return False
    CLIENT_PORT[0] = CLIENT_PORT[0] or _free_port()
    return True


@pytest.fixture(scope="session")
def ray_client_address(ray_cluster: str) -> str:
    """``ray://`` to the same cluster: a driver that is a Ray Client, as on the chart."""
    from tests.conftest import need

    need(_has_client(), "ray[client] (grpcio) is not installed")
    deadline = time.monotonic() + 60
    while not _port_open(CLIENT_PORT[0]):
        assert time.monotonic() < deadline, "the head's Ray Client server did not open in 60 s"
        time.sleep(0.5)
    return f"ray://127.0.0.1:{CLIENT_PORT[0]}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A head and a worker node; yields the address the driver connects to."""
    from tests.conftest import need

    need(importlib.util.find_spec("ray") is not None, "ray is not installed")
    import ray

    cli = _ray_cli()
    need(cli is not None, "the ray command line is not installed")
    assert cli is not None
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="/tmp/trf")  # short: Ray's socket paths have a length limit
    # Ray turns token authentication on when a token exists under ~/.ray (another Ray user on
    # the machine may have left one); this throwaway cluster listens on 127.0.0.1 only, and the
    # driver, head and worker must agree, so all three run without it.
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    src = str(Path(turbomode.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    # The head also serves Ray Client (ray://), the way the chart's jobs join the RayCluster,
    # when ray[client] (grpcio) is installed.
    client = [f"--ray-client-server-port={CLIENT_PORT[0]}"] if _has_client() else []
    head = subprocess.Popen(
        [cli, "start", "--head", f"--port={port}", "--include-dashboard=false",
         f"--temp-dir={temp}", "--node-ip-address=127.0.0.1", *client, *common],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs = [head]
    try:
        deadline = time.monotonic() + 60
        while not _port_open(port):
            assert head.poll() is None, "ray head exited at start"
            assert time.monotonic() < deadline, "ray head did not open its port in 60 s"
            time.sleep(0.5)
        worker = subprocess.Popen(
            [cli, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(worker)
        ray.init(address=address, log_to_driver=False)
        while ray.cluster_resources().get("CPU", 0) < 2:
            assert worker.poll() is None, "ray worker node exited at start"
            assert time.monotonic() < deadline, "the worker node did not join in 60 s"
            time.sleep(0.5)
        yield address
    finally:
        ray.shutdown()
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_mode


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False
