"""Schemathesis against the running service (the session's real server): for every operation
of its OpenAPI document, the document's examples, schemathesis's coverage cases (boundaries,
missing and wrong-typed fields) and up to MAX_EXAMPLES generated ones, valid and invalid,
derandomized so that every run sends the same requests. No answer may be a 5xx, and every
answer must match the document: a documented status, the documented content type and a body
of the documented schema.

The requests are generated from the document as built in this process, which the first test
checks is the one the server serves (schemathesis's fixture-based loader does not run on
pytest 9.2)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.conftest import Server
from turbomode.serving.service import openapi_document

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
schema = schemathesis.openapi.from_dict(openapi_document())


def test_the_document_tested_is_the_one_served(server: Server) -> None:
    assert server.get("/docs.json").json() == openapi_document()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_the_openapi_document(case: schemathesis.Case, server: Server) -> None:
    case.call_and_validate(base_url=server.url, checks=CHECKS)
