"""The service's edge: an ASGI middleware every request passes before BentoML or FastAPI reads
it, and every client error passes on the way out.

* **Body size.** A body over ``TURBOMODE_SERVE_MAX_BODY_BYTES`` is a 413 before anything
  parses it: at once when its Content-Length says so; a chunked body is buffered up to the
  limit and refused as soon as it passes it. Without this a 44 MB /predict_features body was
  parsed whole before its row count was checked.
* **Media type.** The prediction APIs take JSON, as the OpenAPI document says. BentoML would
  parse a form body instead, and answered 500 when its multipart boundary was missing: any
  other Content-Type is a 415 here.
* **Error bodies.** BentoML answers a request it cannot parse with pydantic's error list in
  ``detail``, or with ``[{"error": …}]``; the OpenAPI document promises ``{"error": str,
  "detail": str}``. Such bodies of the prediction APIs are rewritten to that, the problems on
  one line; a plain-text 4xx of any route (Starlette's 404 and 405) becomes ``{"error": …}``.
* **Logs.** Every 4xx is one structured INFO line (``serving.client_error``); BentoML's
  ERROR-with-traceback for a request it refused is dropped (:class:`QuietClientErrors`), so a
  traceback in the log always means a fault of the server.
* **OpenAPI.** ``/docs.json`` gains the statuses BentoML's generated document lacks: 413, and
  the 415 and 503 of the prediction APIs; and their request and response schemas are the
  models' own, where BentoML's copies keep only the first branch of each ``X | None`` (a HOLD's
  ``"stop": null`` broke its own document) (:func:`document`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode
from starlette.datastructures import Headers

from turbomode.logs import event
from turbomode.serving.schemas import ErrorBody

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Bodies = tuple[dict[str, Any], dict[str, Any]]  # request and response body schemas of an API

JSON = "application/json"
OPENAPI_PATH = "/docs.json"
REF_TEMPLATE = "#/components/schemas/{model}"
MAX_PROBLEMS = 5  # pydantic errors named in one message; a 1,000-row body can have thousands

log = logging.getLogger("turbomode.serving")


class _ClientGoneError(Exception):
    """The client disconnected while its body was being read: nobody to answer."""


class RequestGuard:
    """The middleware (``TurboMode.add_asgi_middleware``); see the module notes.

    ``apis`` maps each BentoML API route (JSON only, errors reshaped) to its request and
    response body schemas (:func:`document`).
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, apis: Mapping[str, Bodies]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.apis = dict(apis)
        self.json_routes = frozenset(apis)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = Headers(scope=scope)
        refusal = self._refusal(method, path, headers)
        if refusal is None and "content-length" not in headers and "transfer-encoding" in headers:
            try:
                body = await _read_at_most(receive, self.max_body_bytes)
            except _ClientGoneError:
                return
            if body is None:
                refusal = self._too_large(None)
            else:
                receive = _replay(body, receive)
        if refusal is not None:
            status, error = refusal
            await _send_json(send, status, error.model_dump(exclude_none=True), close=True)
            _log_client_error(method, path, status, error.error)
            return
        if method == "GET" and path == OPENAPI_PATH:
            send = _Rewriting(send, method, path, self._document, keep_ok=True)
        elif method != "HEAD":  # a HEAD answer has no body to rewrite
            shape = _error_body if path in self.json_routes else None
            send = _Rewriting(send, method, path, shape, keep_ok=False)
        await self.app(scope, receive, send)

    def _refusal(self, method: str, path: str, headers: Headers) -> tuple[int, ErrorBody] | None:
        """A 413 or 415 that the headers alone decide."""
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return self._too_large(int(length))
        media = headers.get("content-type", JSON).split(";")[0].strip().lower()
        if method == "POST" and path in self.json_routes and media not in (JSON, ""):
            return 415, ErrorBody(
                error=f"POST {path} takes a JSON body, not {media}",
                detail="send the body as JSON with Content-Type: application/json",
            )
        return None

    def _too_large(self, length: int | None) -> tuple[int, ErrorBody]:
        size = "a chunked body" if length is None else f"a body of {length} bytes"
        return 413, ErrorBody(
            error=f"{size} is over the limit of {self.max_body_bytes} bytes",
            detail="send fewer rows or symbols per request, or raise "
            "TURBOMODE_SERVE_MAX_BODY_BYTES",
        )

    def _document(self, status: int, body: bytes) -> bytes:
        if status != 200:
            return body
        return json.dumps(document(json.loads(body), self.apis)).encode()


class _Rewriting:
    """``send`` that holds a 4xx (and, with ``keep_ok``, a 200) until its body is complete,
    passes a JSON one through ``rewrite`` and logs a 4xx; anything else streams untouched."""

    def __init__(
        self,
        send: Send,
        method: str,
        path: str,
        rewrite: Callable[[int, bytes], bytes] | None,
        keep_ok: bool,
    ) -> None:
        self.send = send
        self.method = method
        self.path = path
        self.rewrite = rewrite
        self.keep_ok = keep_ok
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if 400 <= status < 500 or (self.keep_ok and status == 200):
                self.start = message
                return
        elif message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._flush(self.start, b"".join(self.chunks))
            return
        await self.send(message)

    async def _flush(self, start: Message, body: bytes) -> None:
        status = start["status"]
        raw_headers = start.get("headers", [])
        media = Headers(raw=raw_headers).get("content-type", "").split(";")[0].strip()
        if 400 <= status < 500 and media != JSON:
            # Starlette's plain-text 404 / 405 (e.g. a path its mount's pattern cannot match)
            text = body.decode(errors="replace").strip() or f"HTTP {status}"
            body = ErrorBody(error=text).model_dump_json(exclude_none=True).encode()
            media = JSON
        if media == JSON and self.rewrite is not None:
            body = self.rewrite(status, body)
        if 400 <= status < 500:
            _log_client_error(self.method, self.path, status, _summary(body))
        headers = [
            (k, v) for k, v in raw_headers if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the buffered body first, then what the server sends next."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _send_json(send: Send, status: int, content: dict[str, Any], close: bool) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    if close:  # the unread rest of the body is not worth receiving
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _error_body(status: int, body: bytes) -> bytes:
    """A prediction API's 4xx as the ErrorBody its OpenAPI document promises (BentoML's own
    have pydantic's list in ``detail``, or come wrapped in a list)."""
    if not 400 <= status < 500:
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if not isinstance(payload, dict):
        out = ErrorBody(error=str(payload))
    elif isinstance(payload.get("detail"), list):
        out = ErrorBody(
            error=f"invalid request: {problems(payload['detail'])}",
            detail="the request schema is in the OpenAPI document, /docs.json",
        )
    else:
        detail = payload.get("detail")
        out = ErrorBody(
            error=str(payload.get("error", detail)),
            detail=None if detail is None or "error" not in payload else str(detail),
        )
    return out.model_dump_json(exclude_none=True).encode()


def problems(errors: list[Any]) -> str:
    """Pydantic's error list on one line: ``horizon: Input should be 1, 2 or 5; …``."""
    parts = []
    for e in errors[:MAX_PROBLEMS]:
        if not isinstance(e, dict):
            parts.append(str(e))
            continue
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return "; ".join(parts)


def _summary(body: bytes) -> str:
    """What a 4xx body says, for its log line."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    said = payload.get("error", payload.get("detail")) if isinstance(payload, dict) else payload
    return problems(said) if isinstance(said, list) else str(said)


def _log_client_error(method: str, path: str, status: int, error: str) -> None:
    event(
        log,
        "serving.client_error",
        logging.INFO,
        method=method,
        path=path,
        status=status,
        error=error,
    )


def document(spec: dict[str, Any], apis: Mapping[str, Bodies]) -> dict[str, Any]:
    """The OpenAPI document as the service answers: 413 on every operation that takes a body;
    on the prediction APIs 415 and 503, and the request and 200 body schemas of ``apis``."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template=REF_TEMPLATE))

    def error(description: str) -> dict[str, Any]:
        ref = {"$ref": REF_TEMPLATE.format(model="ErrorBody")}
        return {"description": description, "content": {JSON: {"schema": ref}}}

    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault(
                    "413", error("Request body over TURBOMODE_SERVE_MAX_BODY_BYTES")
                )
            if method != "post" or path not in apis:
                continue
            request, response = apis[path]
            operation["requestBody"]["content"][JSON]["schema"] = request
            responses["200"]["content"][JSON]["schema"] = response
            responses.setdefault("415", error("A body that is not JSON"))
            responses.setdefault(
                "503", error("The market data, the online store or a model does not answer")
            )
    return spec


def body_schemas(request: type[BaseModel], response: type[BaseModel]) -> Bodies:
    """A BentoML API's request and response body schemas for :func:`document`; the models they
    nest are the document's components (BentoML puts them there)."""

    def schema(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        out = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)
        out.pop("$defs", None)
        return out

    return schema(request, "validation"), schema(response, "serialization")


class QuietClientErrors(logging.Filter):
    """Drops BentoML's ERROR-with-traceback for a request it refused (a pydantic
    ValidationError from parsing the body, a BentoMLException under 500): the request is
    logged once, as a client error, by :class:`RequestGuard`. The service's own code never
    lets an exception reach BentoML (``service._answer``), so these are never faults of ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            return False
        return not (isinstance(exc, BentoMLException) and exc.error_code < 500)


def quiet_client_errors() -> None:
    """Install :class:`QuietClientErrors` on the logger of BentoML's ``log_exception``."""
    from bentoml._internal.server import http_app

    if not any(isinstance(f, QuietClientErrors) for f in http_app.logger.filters):
        http_app.logger.addFilter(QuietClientErrors())
