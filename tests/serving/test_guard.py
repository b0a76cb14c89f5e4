"""The edge's rules without a server: BentoML's error bodies become the documented ErrorBody,
the OpenAPI document gains the guard's statuses, BentoML's traceback for a refused request is
dropped while a fault's is kept, an empty admin token is no token, and the feature range is
exactly what the models' float32 matrix keeps finite."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import numpy as np
import pytest
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound
from pydantic import BaseModel, TypeAdapter, ValidationError

from turbomode.models.ensemble import feature_matrix
from turbomode.serving.guard import (
    QuietClientErrors,
    _error_body,
    body_schemas,
    document,
    problems,
)
from turbomode.serving.schemas import FLOAT32_MAX, ErrorBody, FeatureValue
from turbomode.serving.settings import ServingSettings


def shaped(payload: object, status: int = 400) -> dict[str, object]:
    out = json.loads(_error_body(status, json.dumps(payload).encode()))
    ErrorBody.model_validate(out)
    assert all(isinstance(v, str) for v in out.values())
    return dict(out)


def test_bentoml_error_bodies_become_one_line_error_bodies() -> None:
    validation = {
        "error": "2 validation errors for Input",
        "detail": [
            {"type": "literal_error", "loc": ["horizon"], "msg": "Input should be 1, 2 or 5"},
            {"type": "missing", "loc": ["features", 0, 3], "msg": "Field required"},
        ],
    }
    assert shaped(validation) == {
        "error": "invalid request: horizon: Input should be 1, 2 or 5; features.0.3: Field "
        "required",
        "detail": "the request schema is in the OpenAPI document, /docs.json",
    }
    invalid_json = {"detail": [{"loc": [], "msg": "Invalid JSON: EOF while parsing"}]}
    assert shaped(invalid_json)["error"] == "invalid request: Invalid JSON: EOF while parsing"
    assert shaped([{"error": "not allowed"}], 415) == {"error": "not allowed"}
    ours = {"error": "unknown symbol 'NOPE'", "detail": "see /signals"}
    assert shaped(ours, 404) == ours
    assert shaped({"detail": "Not Found"}, 404) == {"error": "Not Found"}
    assert shaped(["a", "b"]) == {"error": "['a', 'b']"}
    fault = b'{"error": "unexpected"}'
    assert _error_body(500, fault) == fault  # a 5xx is left as BentoML wrote it


def test_thousands_of_problems_are_named_up_to_five() -> None:
    errors = [{"loc": ["features", i, 0], "msg": "bad"} for i in range(1000)]
    assert problems(errors) == (
        "features.0.0: bad; features.1.0: bad; features.2.0: bad; features.3.0: bad; "
        "features.4.0: bad; and 995 more"
    )


def test_the_document_says_what_the_service_answers() -> None:
    class Out(BaseModel):
        stop: float | None
        thresholds: ErrorBody

    def flattened() -> dict[str, Any]:  # BentoML's copy: `float | None` became a number
        schema = {"type": "object", "properties": {"stop": {"type": "number"}}}
        return {"content": {"application/json": {"schema": schema}}}

    spec = {
        "paths": {
            "/predict": {
                "post": {"requestBody": flattened(), "responses": {"200": flattened(), "400": {}}}
            },
            "/signals": {"get": {"responses": {"200": {}}}, "parameters": []},
            "/admin/reload": {"post": {"responses": {"200": {}}}},
        }
    }
    request, response = body_schemas(ErrorBody, Out)
    out = document(spec, {"/predict": (request, response)})
    predict = out["paths"]["/predict"]["post"]
    assert sorted(predict["responses"]) == ["200", "400", "413", "415", "503"]
    assert sorted(out["paths"]["/signals"]["get"]["responses"]) == ["200"]
    assert sorted(out["paths"]["/admin/reload"]["post"]["responses"]) == ["200"]
    ref = predict["responses"]["413"]["content"]["application/json"]["schema"]
    assert ref == {"$ref": "#/components/schemas/ErrorBody"}
    assert out["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == request
    got = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert got["properties"]["stop"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}],
        "title": "Stop",
    }
    assert got["properties"]["thresholds"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "$defs" not in got


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "bentoml", logging.ERROR, __file__, 1, "Exception on /predict", (), info
    )


def test_only_refused_requests_lose_their_traceback() -> None:
    class Input(BaseModel):
        horizon: int

    with pytest.raises(ValidationError) as refused:
        Input.model_validate_json(b'{"horizon": "soon"}')
    quiet = QuietClientErrors()
    assert not quiet.filter(_record(refused.value))
    assert not quiet.filter(_record(InvalidArgument("bad input")))
    assert not quiet.filter(_record(NotFound("no such thing")))
    assert quiet.filter(_record(BentoMLException("server side")))  # 500
    assert quiet.filter(_record(RuntimeError("a fault")))
    assert quiet.filter(logging.LogRecord("bentoml", logging.INFO, __file__, 1, "hi", (), None))


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_admin_token_is_no_token(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TURBOMODE_SERVE_ADMIN_TOKEN", value)
    assert ServingSettings().admin_token is None
    assert ServingSettings(admin_token=value).admin_token is None
    monkeypatch.setenv("TURBOMODE_SERVE_ADMIN_TOKEN", "s3cret")
    token = ServingSettings().admin_token
    assert token is not None and token.get_secret_value() == "s3cret"


def test_the_body_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServingSettings().max_body_bytes == 8 * 2**20
    monkeypatch.setenv("TURBOMODE_SERVE_MAX_BODY_BYTES", "65536")
    assert ServingSettings().max_body_bytes == 65536
    monkeypatch.setenv("TURBOMODE_SERVE_MAX_BODY_BYTES", "10")
    with pytest.raises(ValidationError, match="greater than or equal to 1024"):
        ServingSettings()


def test_feature_values_are_what_float32_keeps_finite() -> None:
    adapter = TypeAdapter(FeatureValue)
    for value in (1e37, FLOAT32_MAX, -FLOAT32_MAX, 0.0, 1e-300):
        assert adapter.validate_python(value) == value
        assert np.isfinite(feature_matrix(np.array([[value]]), ["f"])).all()
    for value in (1e39, -1e39, 3.5e38, 1e308):
        with pytest.raises(ValidationError, match="beyond float32"):
            adapter.validate_python(value)
        with np.errstate(over="ignore"):
            assert np.isinf(feature_matrix(np.array([[value]]), ["f"])).all()


def test_a_fault_of_ours_is_a_500_with_its_traceback_not_a_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pydantic error raised by our own code must not reach BentoML, which would answer it as
    the client's 400 (and the guard would drop its traceback)."""
    from turbomode.serving.schemas import Prediction
    from turbomode.serving.service import _answer

    logger = logging.getLogger("turbomode.serving")
    logger.addHandler(caplog.handler)
    try:
        response = _answer(lambda: Prediction.model_validate({"symbol": "AAPL"}))
    finally:
        logger.removeHandler(caplog.handler)
    assert response.status_code == 500
    assert json.loads(bytes(response.body)) == {"error": "internal error: see the server log"}
    (record,) = {id(r): r for r in caplog.records}.values()  # once, whether or not it propagates
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert isinstance(record.exc_info[1], ValidationError)
