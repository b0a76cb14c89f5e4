"""Secrets out of everything the platform prints: ``config show``, log lines and error lines.

Store URLs carry passwords (``postgresql://user:pw@host``, ``redis://:pw@host``) and settings
may carry tokens or keys; a pasted log or settings dump must not leak them. One function,
:func:`redact`, serves every place that prints, so they cannot disagree about what a secret is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Words that make a setting, field or key=value pair a secret.
_SECRET_WORDS = (
    r"password|passwd|passphrase|secret|token|credential|api[_-]?key|access[_-]?key|private[_-]?key"
)
_SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)
# The password in a URL's user info: scheme://user:PASSWORD@host (the user may be empty). It
# may hold an unescaped "/" (cloud keys do): hiding a rare path up to an "@" beats a leak.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?=@)", re.IGNORECASE)
# key=value pairs in free text: query strings, libpq DSNs, messages.
_PAIR = re.compile(rf"(?P<head>\b[\w-]*(?:{_SECRET_WORDS})[\w-]*=)[^\s&;,'\"]+", re.IGNORECASE)


def redact(value: Any, name: str = "") -> Any:
    """``value`` with its secrets replaced by ``***``: the whole value when ``name`` (its
    setting or field name) says it is a secret, else URL passwords and ``password=…``-style
    pairs inside text. Mappings and lists are walked, each value judged by its own key."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, name) for v in value]
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value):
        return value  # nothing to hide, and an unset secret is worth seeing as unset
    if name and _SECRET_NAME.search(name):
        return MASK
    if isinstance(value, str):
        return _PAIR.sub(rf"\g<head>{MASK}", _URL_PASSWORD.sub(rf"\g<head>{MASK}", value))
    return value
