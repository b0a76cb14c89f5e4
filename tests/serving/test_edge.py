"""The service's edge on real servers (``turbomode.serving.guard``): a body over the limit is a
413 answered before the body has even arrived — so nothing parsed it — whether its
Content-Length says so or it comes chunked; a form or any other non-JSON body is a 415, not a
500; feature values beyond float32 are a 400; an empty admin token disables the admin
endpoint; and a client error is one log line without a traceback."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import pytest

from tests.serving.builder import ServedMarket
from tests.serving.conftest import Server, server_env, start_server, stop_server
from turbomode.config import Settings
from turbomode.feature_store import model_features
from turbomode.serving.schemas import FLOAT32_MAX
from turbomode.serving.settings import ServingSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_FEATURES = len(model_features(Settings()))  # what the served models were trained on
DEFAULT_LIMIT = ServingSettings().max_body_bytes
STRICT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def strict(market: ServedMarket, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server: a 64 KiB body limit, and TURBOMODE_SERVE_ADMIN_TOKEN set but empty."""
    workdir = tmp_path_factory.mktemp("strict")
    env = server_env(
        market,
        workdir / "bentoml",
        TURBOMODE_SERVE_ADMIN_TOKEN="",
        TURBOMODE_SERVE_MAX_BODY_BYTES=str(STRICT_LIMIT),
    )
    running = start_server(env, workdir)
    try:
        yield running
    finally:
        stop_server(running)


def exchange(
    server: Server, head: str, parts: Iterable[bytes]
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and then ``parts`` on one connection, read the answer until the
    server closes it. The body need not be complete: the answer may come before it."""
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(head.encode())
        for part in parts:
            conn.sendall(part)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = header.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    return int(status_line.split()[1]), headers, body


def head(path: str, **fields: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in fields.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def chunked(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def documented(server: Server, path: str, status: int) -> bool:
    spec = server.get("/docs.json").json()
    return str(status) in spec["paths"][path]["post"]["responses"]


# --------------------------------------------------------------------------- body size


def test_a_declared_oversized_body_is_refused_before_it_is_sent(strict: Server) -> None:
    """200 MB announced and not a byte of it sent: the 413 comes at once, so nothing waited
    for (let alone parsed) the body. (Sending part of the body first races the server's close:
    bytes arriving after it make the kernel reset the connection, answer and all.)"""
    started = time.monotonic()
    status, headers, body = exchange(
        strict, head("/predict_features", Content_Length=str(200 * 2**20)), []
    )
    assert time.monotonic() - started < 10
    assert status == 413 and headers["connection"] == "close"
    error = json.loads(body)
    assert (
        error["error"] == f"a body of {200 * 2**20} bytes is over the limit of {STRICT_LIMIT} bytes"
    )
    assert "TURBOMODE_SERVE_MAX_BODY_BYTES" in error["detail"]
    assert documented(strict, "/predict_features", 413)


def test_a_chunked_body_is_refused_once_it_passes_the_limit(strict: Server) -> None:
    """Two 40 KiB chunks of a body that never ends: the 413 comes after the second, without the
    final chunk, so the body was never complete and nothing parsed it."""
    part = b"[" + b"0.0," * (10 * 1024)
    status, headers, body = exchange(
        strict,
        head("/predict_features", Transfer_Encoding="chunked"),
        [chunked(b'{"features": ' + part), chunked(part)],
    )
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"] == f"a chunked body is over the limit of {STRICT_LIMIT} bytes"
    assert strict.get("/livez").status_code == 200


def test_bodies_under_the_limit_are_served_chunked_or_not(
    strict: Server, market: ServedMarket
) -> None:
    sym = next(
        s for s in market.symbols_in("Information Technology") if s not in market.scan.failures
    )
    plain = strict.post("/predict", json={"symbol": sym, "horizon": 1})
    parts = iter([b'{"symbol": "', sym.encode(), b'", "horizon": 1}'])
    streamed = strict.post("/predict", data=parts, headers={"Content-Type": "application/json"})
    assert streamed.request.headers["Transfer-Encoding"] == "chunked"
    assert (plain.status_code, streamed.status_code) == (200, 200)
    assert streamed.json() == plain.json()


def test_the_default_limit_holds_a_full_feature_request(server: Server) -> None:
    """1,000 rows × every feature at float64 precision: over 4 MiB, under the default limit,
    scored."""
    rng = random.Random(0)
    rows = [[rng.gauss(0, 1) * 1e-5 for _ in range(N_FEATURES)] for _ in range(1000)]
    body = json.dumps({"sector": "Information Technology", "horizon": 1, "features": rows})
    assert 4 * 2**20 < len(body) <= DEFAULT_LIMIT
    r = server.post("/predict_features", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["predictions"]) == 1000


# --------------------------------------------------------------------------- media type

FORM = [
    ("multipart/form-data", b'{"symbol": "IT01", "horizon": 1}'),
    ("multipart/form-data; boundary=", b"--\r\n\r\n--"),
    ("multipart/form-data; boundary=", b""),
    ('multipart/form-data; boundary="', b"--\r\n"),
    ("multipart/form-data; boundary=abc", b"no parts here"),
    ("multipart/form-data;boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="x"'),
    ("application/x-www-form-urlencoded", b"symbol=IT01&horizon=1"),
    ("text/plain", b'{"symbol": "IT01", "horizon": 1}'),
]


@pytest.mark.parametrize(("content_type", "body"), FORM)
@pytest.mark.parametrize("path", ["/predict", "/predict_batch", "/predict_features"])
def test_a_body_that_is_not_json_is_a_415(
    server: Server, path: str, content_type: str, body: bytes
) -> None:
    r = server.post(path, data=body, headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text
    media = content_type.split(";")[0]
    assert r.json() == {
        "error": f"POST {path} takes a JSON body, not {media}",
        "detail": "send the body as JSON with Content-Type: application/json",
    }
    assert documented(server, path, 415)


def test_a_well_formed_form_is_a_415_too(server: Server) -> None:
    r = server.post("/predict", files={"symbol": (None, "IT01"), "horizon": (None, "1")})
    assert r.request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert r.status_code == 415 and "takes a JSON body" in r.json()["error"]


# --------------------------------------------------------------------------- feature range


def test_feature_values_within_float32_are_scored(server: Server) -> None:
    rows = [[v] * N_FEATURES for v in (1e37, FLOAT32_MAX, -FLOAT32_MAX)]
    r = server.post(
        "/predict_features",
        json={"sector": "Information Technology", "horizon": 1, "features": rows},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3


# --------------------------------------------------------------------------- admin token


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer ", "Bearer x"])
def test_an_empty_admin_token_disables_reload(strict: Server, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    r = strict.post("/admin/reload", headers=headers)
    assert r.status_code == 403, r.text
    assert "TURBOMODE_SERVE_ADMIN_TOKEN" in r.json()["error"]


# --------------------------------------------------------------------------- logs


def test_client_errors_are_one_log_line_without_a_traceback(server: Server) -> None:
    offset = server.log.stat().st_size
    bad = [
        (400, '{"symbol": "IT01", "horizon": 1', "application/json"),
        (400, '{"symbol": "IT01", "horizon": 3}', "application/json"),
        (404, '{"symbol": "NOPE", "horizon": 1}', "application/json"),
        (415, '{"symbol": "IT01", "horizon": 1}', "multipart/form-data"),
    ]
    for status, body, content_type in bad:
        r = server.post("/predict", data=body, headers={"Content-Type": content_type})
        assert r.status_code == status, r.text
    status, _, _ = exchange(server, head("/predict", Content_Length=str(DEFAULT_LIMIT + 1)), [])
    assert status == 413
    expected = sorted([s for s, _, _ in bad] + [413])

    deadline = time.monotonic() + 15
    while True:  # until the JSON lines (stderr) and BentoML's access lines (stdout) are written
        with server.log.open("rb") as f:
            f.seek(offset)
            new = f.read().decode(errors="replace")
        lines = [json.loads(x) for x in new.splitlines() if '"serving.client_error"' in x]
        if (len(lines) >= 5 and new.count("(status=4") >= 5) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(x["status"] for x in lines) == expected, new
    assert all(x["level"] == "info" and x["path"] == "/predict" for x in lines)
    assert any("horizon: Input should be 1, 2 or 5" in x["error"] for x in lines)
    assert "Traceback" not in new and "[ERROR]" not in new, new
