"""``turbomode pipelines submit`` drives the real ``kfp.Client`` against a local HTTP server
that answers with hand-written v2beta1 API bodies and keeps every request it was sent."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from turbomode.cli.pipelines import pipelines_app
from turbomode.pipelines.runs import submit, version_name

HANDWRITTEN = Path(__file__).parent / "handwritten_kfp"
REPO = Path(__file__).resolve().parents[2]
API = "/apis/v2beta1"
PIPELINE_ID = "5b7a3c2e-1f0d-4c55-9a37-2f1e0c9d8a61"
VERSION_ID = "e0c4d6a8-72b1-4f3e-8d2c-9a61b5f3c7d4"
EXPERIMENT_ID = "8f2d91b4-3c6a-4e07-b5d1-7a0e2c4f9b38"
RUN_ID = "c3a9e7f1-0b2d-4d84-a6f5-1e8c7b3d2a90"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def files(self) -> dict[str, bytes]:
        """The files of a multipart/form-data body, by form field name."""
        head = f"Content-Type: {self.content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        out: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[str(name)] = payload
        return out


@dataclass
class Replay:
    """Answers per (method, path), in order; every request kept."""

    answers: dict[tuple[str, str], list[str]]
    requests: list[Request] = field(default_factory=list)
    url: str = ""


def _handler(replay: Replay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            replay.requests.append(
                Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    self.headers.get("Content-Type", ""),
                    self.rfile.read(length),
                )
            )
            queue = replay.answers.get((self.command, parts.path))
            if not queue:
                missing = f"no hand-written answer for {parts.path}"
                status, body = 404, json.dumps({"error": missing})
            else:
                status, body = 200, (HANDWRITTEN / queue.pop(0)).read_text()
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Replay]:
    import kfp

    # A developer's saved KFP context (~/.config/kfp/context.json) would change what the
    # client asks; point it at a file that does not exist.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))
    monkeypatch.delenv("TURBOMODE_COMPONENTS_IMAGE", raising=False)
    state = Replay(answers={})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _filter(request: Request) -> dict[str, Any]:
    return json.loads(request.query["filter"][0])


def test_first_submit_uploads_the_pipeline_a_version_and_starts_a_run(replay: Replay) -> None:
    replay.answers = {
        ("GET", f"{API}/healthz"): ["healthz.json"],
        ("GET", f"{API}/pipelines"): ["pipelines_none.json"],
        ("POST", f"{API}/pipelines/upload"): ["pipeline_uploaded.json"],
        ("GET", f"{API}/pipelines/{PIPELINE_ID}/versions"): ["versions_none.json"],
        ("POST", f"{API}/pipelines/upload_version"): ["version_uploaded.json"],
        ("GET", f"{API}/experiments"): ["experiments_none.json"],
        ("POST", f"{API}/experiments"): ["experiment_created.json"],
        ("POST", f"{API}/runs"): ["run_created.json"],
    }
    result = CliRunner().invoke(
        pipelines_app,
        [
            "submit",
            "training",
            "--host",
            replay.url,
            "--experiment",
            "turbomode",
            "--param",
            "sectors=Energy,Utilities",
            "--run-name",
            "nightly training",
        ],
    )
    assert result.exit_code == 0, result.output
    assert RUN_ID in result.output and "uploaded" in result.output

    seen = [(r.method, r.path) for r in replay.requests]
    assert seen == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines/upload"),
        ("GET", f"{API}/pipelines/{PIPELINE_ID}/versions"),
        ("POST", f"{API}/pipelines/upload_version"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    (_h, find, upload, versions, upload_version, find_exp, create_exp, run) = replay.requests
    assert _filter(find)["predicates"][0]["stringValue"] == "turbomode-training"

    # What was uploaded, both times, is exactly the committed pipeline.
    committed = (REPO / "pipelines" / "training.yaml").read_bytes()
    assert upload.query["name"] == ["turbomode-training"]
    assert upload.files()["uploadfile"] == committed
    vname = upload_version.query["name"][0]
    assert vname == version_name("training", REPO / "pipelines" / "training.yaml")
    assert upload_version.query["pipelineid"] == [PIPELINE_ID]
    assert upload_version.files()["uploadfile"] == committed
    assert _filter(versions)["predicates"][0]["stringValue"] == vname

    assert _filter(find_exp)["predicates"][0]["stringValue"] == "turbomode"
    assert create_exp.json()["display_name"] == "turbomode"
    body = run.json()
    assert body["experiment_id"] == EXPERIMENT_ID
    assert body["display_name"] == "nightly training"
    assert body["pipeline_version_reference"] == {
        "pipeline_id": PIPELINE_ID,
        "pipeline_version_id": VERSION_ID,
    }
    assert body["runtime_config"]["parameters"] == {"sectors": "Energy,Utilities"}
    assert "pipeline_spec" not in body  # the run refers to the uploaded version


def test_an_unchanged_pipeline_is_not_uploaded_again(replay: Replay) -> None:
    replay.answers = {
        ("GET", f"{API}/healthz"): ["healthz.json"],
        ("GET", f"{API}/pipelines"): ["pipelines_training.json"],
        ("GET", f"{API}/pipelines/{PIPELINE_ID}/versions"): ["versions_found.json"],
        ("GET", f"{API}/experiments"): ["experiments_found.json"],
        ("POST", f"{API}/runs"): ["run_created.json"],
    }
    done = submit("training", replay.url, params={"sectors": "Energy,Utilities"})
    assert not done.uploaded
    assert (done.pipeline_id, done.version_id) == (PIPELINE_ID, VERSION_ID)
    assert (done.experiment_id, done.run_id) == (EXPERIMENT_ID, RUN_ID)
    assert [r.method for r in replay.requests] == ["GET", "GET", "GET", "GET", "POST"]
    assert not any("upload" in r.path for r in replay.requests)


def test_a_parameter_the_pipeline_lacks_is_refused_before_any_request(replay: Replay) -> None:
    result = CliRunner().invoke(
        pipelines_app, ["submit", "training", "--host", replay.url, "--param", "sector=Energy"]
    )
    assert result.exit_code == 2
    assert "no parameter 'sector'" in result.output and "sectors" in result.output
    assert replay.requests == []


def test_a_server_error_is_reported_not_raised(replay: Replay) -> None:
    replay.answers = {("GET", f"{API}/healthz"): ["healthz.json"]}  # nothing for the rest
    result = CliRunner().invoke(pipelines_app, ["submit", "nightly-scan", "--host", replay.url])
    assert result.exit_code == 2
    assert f"the KFP API at {replay.url} answered 404" in result.output
    assert "no hand-written answer for /apis/v2beta1/pipelines" in result.output


def test_an_unreachable_endpoint_is_named() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(pipelines_app, ["submit", "outcomes", "--host", url])
    assert result.exit_code == 2
    assert f"cannot reach the KFP API at {url}" in result.output
