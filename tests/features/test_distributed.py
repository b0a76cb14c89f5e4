"""The Ray feature build gives the single-process engine's values: the block decomposition in
process (fast, several splits), and the real thing on a two-node Ray.

The cluster is two ``ray start`` processes on this machine (a head and a worker node, one CPU
each), so blocks really run on both nodes and move through the object store between them. Each
is started with ``--block`` in a process group of its own and stopped by that group in
teardown: ``ray stop`` would also stop any other Ray on the machine.
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

import numpy as np
import pandas as pd
import pytest

import turbomode
from tests.conftest import need
from tests.features.conftest import synthetic_market
from turbomode.config import Settings, SyntheticSettings
from turbomode.data.sources.synthetic import generate_market
from turbomode.features.distributed import build_features_ray, read_parts, use_ray
from turbomode.features.engine import build_features


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head and a worker node; yields the address the driver connects to."""
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
    head = subprocess.Popen(
        [cli, "start", "--head", f"--port={port}", "--include-dashboard=false",
         f"--temp-dir={temp}", "--node-ip-address=127.0.0.1", *common],
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


@pytest.mark.integration
@pytest.mark.slow
def test_ray_build_equals_engine_on_the_synthetic_market(cluster: str, tmp_path: Path) -> None:
    """Full registry, float32, macro series, listings and a delisting: the same bits, and the
    written parts read back as the same frame."""
    md = generate_market(SyntheticSettings(n_symbols=30, n_days=300))
    sectors = md.universe.sector_map()
    local = build_features(md.prices, md.market, sectors, macro=md.macro)
    out = str(tmp_path / "features")
    got = build_features_ray(
        md.prices, md.market, sectors, macro=md.macro, out=out, symbol_blocks=4, date_blocks=3
    )
    pd.testing.assert_frame_equal(got.frame, local.frame, check_exact=True)
    pd.testing.assert_frame_equal(read_parts(out), local.frame, check_exact=True)
    parts = sorted(p.name for p in Path(out).iterdir())
    assert parts == [f"symbol_block={k:05d}" for k in range(4)]
    assert got.report.nan_share == local.report.nan_share
    assert got.report.short_history == local.report.short_history
    assert got.report.missing_macro == local.report.missing_macro


@pytest.mark.integration
@pytest.mark.slow
def test_ray_build_without_collecting(cluster: str, tmp_path: Path) -> None:
    """A subset in float64, an unmapped symbol, a short history and a VIX gap, left in the
    parts only (how a universe larger than the driver is built)."""
    prices, market, sectors = synthetic_market(n_symbols=13, n_days=300, seed=3)
    sectors.pop("S05")
    names = ["ret_5", "rsi_14", "beta_spy_60", "cs_rank_ret_5", "sector_rank_ret_20",
             "sector_rel_ret_1", "breadth_sma_50", "rs_sector_20", "month_end_window"]  # fmt: skip
    local = build_features(prices, market, sectors, features=names, dtype=np.float64)
    out = str(tmp_path / "subset")
    got = build_features_ray(
        prices, market, sectors, features=names, dtype=np.float64, out=out,
        symbol_blocks=3, date_blocks=5, collect=False,
    )  # fmt: skip
    assert got.frame.empty
    pd.testing.assert_frame_equal(read_parts(out), local.frame, check_exact=True)
    assert got.report.unmapped_symbols == ["S05"]
    assert got.report.nan_share == local.report.nan_share


@pytest.mark.parametrize(("symbol_blocks", "date_blocks"), [(1, 1), (4, 3), (12, 1), (2, 320)])
def test_blocks_in_process_equal_the_engine(symbol_blocks: int, date_blocks: int) -> None:
    """The decomposition itself, without Ray: one block, uneven blocks, one symbol a block,
    one date a block — the same bits every way (a short symbol and a VIX gap included)."""
    prices, market, sectors = synthetic_market(n_symbols=12, n_days=320, seed=1)
    local = build_features(prices, market, sectors)
    got = build_features_ray(
        prices, market, sectors, symbol_blocks=symbol_blocks, date_blocks=date_blocks,
        in_process=True,
    )  # fmt: skip
    pd.testing.assert_frame_equal(got.frame, local.frame, check_exact=True)
    assert got.report.nan_share == local.report.nan_share


def test_engine_setting_picks_ray_from_the_measured_size() -> None:
    s = Settings()
    s.features.ray_min_symbols = 2000
    assert not use_ray(s, 1999)
    assert use_ray(s, 2000)
    s.features.engine = "local"
    assert not use_ray(s, 20_000)
    s.features.engine = "ray"
    assert use_ray(s, 10)
