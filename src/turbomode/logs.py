"""Structured log lines: one JSON object per event, so a cluster's log stack can index them."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from turbomode.redaction import redact

_CONFIGURED = False


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets redacted (a store URL in a message, a token in a
    field, a DSN in a traceback): log lines are shipped and pasted where secrets must not go."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(redact(payload), default=str)


def configure(level: str = "INFO") -> None:
    """Send JSON lines to stderr (stdout stays for tables and progress)."""
    global _CONFIGURED
    root = logging.getLogger("turbomode")
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.propagate = False
        _CONFIGURED = True
    root.setLevel(level.upper())


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields."""
    logger.log(level, name, extra={"fields": fields})
