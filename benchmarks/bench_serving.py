"""Serving benchmark: /predict latency at a target request rate and a 500-symbol
/predict_batch over HTTP on 127.0.0.1, beside the same predictions in process.

Market: ``tests.serving.builder.build_market`` — a synthetic market of ``--symbols`` (500)
symbols × 320 days through ingest, features, Feast's online store (SQLite) and four nightly
scans. Models: two default-size ensembles (``ModelSettings()``, ≤ ``--train-rows`` rows each,
one on 1-day and one on 5-day labels) promoted for every sector × horizon but one sector and
two horizons (as the tests do), or a bench_train work directory's 33 (``--models-from``):
prediction cost depends on model size, not on what a model learned.

The service runs as ``turbomode serve`` would (one BentoML worker), twice: with the prediction
memo (the default) and with ``TURBOMODE_SERVE_MEMO_SIZE=0``, where every request is computed.

* **/predict at --rate req/s for --seconds**: open loop — request *i* is due at t0 + i/rate
  whatever happened to the others, and its latency runs from that due time, so queueing
  behind a slow request counts (no coordinated omission). Symbols cycle through every scorable
  symbol (horizon 1), after one untimed pass that loads the models (and fills the memo).
* **/predict_batch** of ``--batch`` symbols, one horizon and all three: median of ``--repeats``.
* **baseline**: the same calls on a :class:`~turbomode.serving.predictor.Predictor` in this
  process (no HTTP, no server), memo on and off, measured in the same run.

Targets on 2 cores: /predict p50 ≤ 5 ms and p99 ≤ 25 ms at 200 req/s with no errors; the
500-symbol batch ≤ 150 ms. The load generator shares the machine's cores with the server.

Usage: python benchmarks/bench_serving.py [--symbols 500] [--rate 200] [--seconds 20]
       [--models-from /tmp/bt_full] [--train-rows 20000] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

TARGET_P50_MS, TARGET_P99_MS, TARGET_BATCH_MS = 5.0, 25.0, 150.0


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if not ordered:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1]}


class Client:
    """One keep-alive HTTP connection (http.client: the lightest client in the stdlib)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, data, {"content-type": "application/json"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # The server closes a keep-alive connection idle for 5 s: open a new one.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def open_loop(
    url: str, bodies: Sequence[dict[str, Any]], rate: float, seconds: float, threads: int = 16
) -> dict[str, Any]:
    """Send /predict request i at t0 + i / rate; latency from that due time to the answer."""
    n = int(rate * seconds)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))
    t0 = time.perf_counter() + 0.2

    def worker() -> None:
        client = Client(url)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                try:
                    status, payload = client.post("/predict", bodies[i % len(bodies)])
                except OSError as exc:
                    status, payload = 0, repr(exc).encode()
                    client = Client(url)
                done = time.perf_counter()
                with lock:
                    latencies.append((done - due) * 1e3)
                    if status != 200:
                        errors.append(f"{status}: {payload[:200]!r}")
        finally:
            client.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "requests": n,
        "errors": len(errors),
        "error_examples": errors[:3],
        "throughput_rps": n / wall,
        **percentiles(latencies),
    }


def closed_loop(client: Client, bodies: Sequence[dict[str, Any]], n: int) -> dict[str, float]:
    """One client, each request sent when the previous one answered: the service time."""
    latencies = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        client.post("/predict", bodies[i % len(bodies)])
        latencies.append((time.perf_counter() - t) * 1e3)
    return {"throughput_rps": n / (time.perf_counter() - t0), **percentiles(latencies)}


def timed(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        runs.append((time.perf_counter() - t) * 1e3)
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


def in_process(predictor: Any, bodies: Sequence[dict[str, Any]], n: int) -> dict[str, float]:
    """The baseline: Predictor.predict back to back in this process."""
    for body in bodies:
        predictor.predict(body["symbol"], body["horizon"])  # untimed: load models, fill memo
    latencies = []
    for i in range(n):
        body = bodies[i % len(bodies)]
        t = time.perf_counter()
        predictor.predict(body["symbol"], body["horizon"])
        latencies.append((time.perf_counter() - t) * 1e3)
    return percentiles(latencies)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--train-rows", type=int, default=20_000)
    ap.add_argument("--models-from", default=None, help="bench_train work dir")
    ap.add_argument("--work", default=None, help="scratch directory (default: a new temp dir)")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "serving.json"))
    args = ap.parse_args()

    from tests.serving.builder import build_market
    from tests.serving.conftest import server_env, start_server, stop_server

    from turbomode.config import ModelSettings
    from turbomode.serving.predictor import Predictor
    from turbomode.serving.settings import ServingSettings

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_serving_"))
    t = time.perf_counter()
    market = build_market(
        work / "market",
        n_symbols=args.symbols,
        model_settings=ModelSettings(),
        train_rows=args.train_rows,
        models_from=Path(args.models_from) if args.models_from else None,
    )
    origin = (
        f"bench_train's ensembles from {args.models_from}"
        if args.models_from
        else f"default-size ensembles on ≤ {args.train_rows:,} rows"
    )
    scored = sorted(set(market.scan.scores.loc[market.scan.scores["horizon"] == 1, "symbol"]))
    print(
        f"market: {len(market.members)} symbols, {len(scored)} scorable on 1 day, models: "
        f"{origin}; built in {time.perf_counter() - t:.0f} s ({work})"
    )
    bodies = [{"symbol": s, "horizon": 1} for s in scored]
    batch = sorted(market.members["symbol"])[: args.batch]
    results: dict[str, Any] = {"symbols": len(market.members), "models": origin, "runs": {}}

    for label, memo, seconds in (("memo", "8192", args.seconds), ("no memo", "0", 5.0)):
        env = server_env(market, work / "bentoml", TURBOMODE_SERVE_MEMO_SIZE=memo)
        server = start_server(env, work)
        try:
            client = Client(server.url)
            for body in bodies:  # untimed: every model loaded, memo filled
                client.post("/predict", body)
            one = {"symbols": batch, "horizons": [1]}
            three = {"symbols": batch}
            client.post("/predict_batch", one)  # untimed, as above
            client.post("/predict_batch", three)
            closed = closed_loop(client, bodies, min(1000, len(bodies) * 2))
            run = open_loop(server.url, bodies, args.rate, seconds)
            one_h = timed(lambda c=client, b=one: c.post("/predict_batch", b), args.repeats)
            all_h = timed(lambda c=client, b=three: c.post("/predict_batch", b), args.repeats)
            status, payload = client.post("/predict_batch", three)
            answered = json.loads(payload)
            client.close()
        finally:
            stop_server(server)
        results["runs"][label] = {
            "predict_open_loop": {**run, "seconds": seconds},
            "predict_closed_loop": closed,
            "batch_1h_ms": one_h,
            "batch_3h_ms": all_h,
            "batch_predictions": len(answered["predictions"]),
            "batch_errors": len(answered["errors"]),
            "batch_status": status,
        }

    for label, size in (("memo", 8192), ("no memo", 0)):
        predictor = Predictor(market.settings, ServingSettings(memo_size=size))
        base = in_process(predictor, bodies, min(1000, len(bodies) * 2))
        predictor.predict_batch(batch, None)  # untimed: load every model
        one_h = timed(lambda p=predictor: p.predict_batch(batch, [1]), args.repeats)
        all_h = timed(lambda p=predictor: p.predict_batch(batch, None), args.repeats)
        results["runs"][label]["baseline_predict"] = base
        results["runs"][label]["baseline_batch_1h_ms"] = one_h
        results["runs"][label]["baseline_batch_3h_ms"] = all_h

    print(f"\n{'measure':60s} {'memo':>18s} {'no memo':>18s}")

    def row(name: str, fn: Callable[[dict[str, Any]], str]) -> None:
        runs = results["runs"]
        print(f"{name:60s} {fn(runs['memo']):>18s} {fn(runs['no memo']):>18s}")

    def pair(a: float, b: float, digits: int = 1) -> str:
        return f"{a:.{digits}f} / {b:.{digits}f}"

    row(
        f"/predict, open loop at {args.rate:.0f} req/s ({args.seconds:.0f} s | 5 s): p50 / p99 ms",
        lambda r: pair(r["predict_open_loop"]["p50"], r["predict_open_loop"]["p99"]),
    )
    row(
        "  p90 / max ms",
        lambda r: pair(r["predict_open_loop"]["p90"], r["predict_open_loop"]["max"]),
    )
    row(
        "  achieved req/s, failed requests",
        lambda r: (
            f"{r['predict_open_loop']['throughput_rps']:.0f}, {r['predict_open_loop']['errors']}"
        ),
    )
    row(
        "/predict, one client back to back: p50 / p99 ms",
        lambda r: pair(r["predict_closed_loop"]["p50"], r["predict_closed_loop"]["p99"]),
    )
    row("  req/s", lambda r: f"{r['predict_closed_loop']['throughput_rps']:.0f}")
    row(
        "baseline: Predictor.predict in process: p50 / p99 ms",
        lambda r: pair(r["baseline_predict"]["p50"], r["baseline_predict"]["p99"], 2),
    )
    row(
        f"/predict_batch, {len(batch)} symbols × 1 horizon: median ms",
        lambda r: f"{r['batch_1h_ms']['median']:.0f}",
    )
    row("  baseline in process: median ms", lambda r: f"{r['baseline_batch_1h_ms']['median']:.0f}")
    row(
        f"/predict_batch, {len(batch)} symbols × 3 horizons: median ms",
        lambda r: f"{r['batch_3h_ms']['median']:.0f}",
    )
    row("  baseline in process: median ms", lambda r: f"{r['baseline_batch_3h_ms']['median']:.0f}")
    row(
        "  predictions / errors in the 3-horizon answer",
        lambda r: f"{r['batch_predictions']} / {r['batch_errors']}",
    )

    memo = results["runs"]["memo"]["predict_open_loop"]
    met = {
        "predict p50": memo["p50"] <= TARGET_P50_MS,
        "predict p99": memo["p99"] <= TARGET_P99_MS,
        "no errors": memo["errors"] == 0,
        "batch": results["runs"]["memo"]["batch_1h_ms"]["median"] <= TARGET_BATCH_MS,
    }
    results["targets_met_with_memo"] = met
    print(
        f"targets (p50 ≤ {TARGET_P50_MS:.0f} ms, p99 ≤ {TARGET_P99_MS:.0f} ms at {args.rate:.0f} "
        f"req/s, no errors, {len(batch)}-symbol batch ≤ {TARGET_BATCH_MS:.0f} ms), with the "
        f"memo: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items())
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"written: {out}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
