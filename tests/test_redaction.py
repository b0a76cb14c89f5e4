"""Secrets never printed: the one redaction, in `config show`, log lines and error lines."""

from __future__ import annotations

import io
import json
import logging

import pytest
from typer.testing import CliRunner

from turbomode.cli.main import app
from turbomode.logs import JsonFormatter, event
from turbomode.redaction import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "postgresql+psycopg://turbo:s3cret@db:5432/test",
            "postgresql+psycopg://turbo:***@db:5432/test",
        ),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("s3://AKIAXX:wJal/r+s3cret@bucket/models", "s3://AKIAXX:***@bucket/models"),
        (
            "host=db user=turbo password=s3cret port=5432",
            "host=db user=turbo password=*** port=5432",
        ),
        (
            "https://api.example/x?access_token=s3cret&page=2",
            "https://api.example/x?access_token=***&page=2",
        ),
        # Nothing secret: left as it is.
        ("postgresql+psycopg://postgres@127.0.0.1:5432/test", None),
        ("sqlite:///data/signals.db", None),
        ("http://127.0.0.1:9091", None),
        ("a token of 3 bars", None),
    ],
)
def test_secrets_in_text_are_masked_and_the_rest_kept(text: str, shown: str | None) -> None:
    assert redact(text) == (text if shown is None else shown)


def test_values_of_secret_names_are_masked_whole_at_any_depth() -> None:
    settings = {
        "stores": {"redis_url": "redis://:pw1@r:6379/0", "api_key": "k-123", "retries": 3},
        "auth": {"bearer_token": "t-456", "client_secret": 789, "password": "", "user": "me"},
        "hosts": ["postgresql://a:pw2@h1/db", "postgresql://h2/db"],
        "tls": {"password_required": True},
    }
    assert redact(settings) == {
        "stores": {"redis_url": "redis://:***@r:6379/0", "api_key": "***", "retries": 3},
        "auth": {"bearer_token": "***", "client_secret": "***", "password": "", "user": "me"},
        "hosts": ["postgresql://a:***@h1/db", "postgresql://h2/db"],
        "tls": {"password_required": True},
    }


def test_log_lines_carry_no_secret() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("turbomode.test_redaction")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        event(log, "store.open", url="postgresql://turbo:pw-one@db/test", api_token="pw-two")
        log.warning("retrying %s", "redis://:pw-three@redis:6379/0")
        try:
            raise ConnectionError("cannot connect: host=db password=pw-four")
        except ConnectionError:
            log.exception("store.failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "pw-" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["url"] == "postgresql://turbo:***@db/test" and lines[0]["api_token"] == "***"
    assert lines[1]["event"] == "retrying redis://:***@redis:6379/0"
    assert "password=***" in lines[2]["exc"]


def test_config_show_redacts_store_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", "postgresql+psycopg://turbo:pw-a@db/test")
    monkeypatch.setenv("TURBOMODE_STORES__REDIS_URL", "redis://:pw-b@redis:6379/0")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "pw-" not in result.output
    assert "signals_url: postgresql+psycopg://turbo:***@db/test" in result.output
    assert "redis_url: redis://:***@redis:6379/0" in result.output
