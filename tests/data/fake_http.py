"""What the fake Yahoo servers share (tests/data/test_yahoo.py, tests/data/test_earnings.py): a
clock the rate limiter sleeps on without sleeping, the record of each request, and the adapter
base that yfinance's real HTTP code talks to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Call:
    host: str
    path: str
    params: dict[str, str]
    at: float


def response(
    request: Any, status: int, body: bytes, content_type: str = "application/json;charset=utf-8"
) -> requests.Response:
    """A finished response to ``request``, as the real adapter would build it."""
    r = requests.Response()
    r.status_code = status
    r._content = body
    r.headers["Content-Type"] = content_type
    r.url = request.url
    r.request = request
    r.encoding = "utf-8"
    return r


def reset_once(fake: FakeHttp, key: str, host: str) -> None:
    """Raise a connection reset while ``fake.fail[key]`` has resets left."""
    if fake.fail.get(key, 0) > 0:
        fake.fail[key] -= 1
        raise requests.ConnectionError(f"Connection reset by peer ({host})")


@dataclass
class FakeHttp(BaseAdapter):
    """A requests adapter answering every request in process. It records each call, lets a
    subclass answer (``answer``: a response, or None for not mine), then answers Yahoo's
    session handshake (crumb, cookie, consent) and records anything else as unexpected."""

    clock: FakeClock
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # key -> connection resets left
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def session(self) -> requests.Session:
        s = requests.Session()
        s.mount("https://", self)
        s.mount("http://", self)
        return s

    def answer(
        self, request: requests.PreparedRequest, url: SplitResult, path: str, params: dict[str, str]
    ) -> requests.Response | None:
        raise NotImplementedError

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        full_url = str(request.url)
        url = urlsplit(full_url)
        path = unquote(url.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append(Call(url.netloc, path, params, self.clock.now))
        mine = self.answer(request, url, path, params)
        if mine is not None:
            return mine
        if path == "/v1/test/getcrumb":
            return response(request, 200, b"Xq4bNw9mZ1k", "text/plain")
        if url.netloc == "fc.yahoo.com":  # Yahoo answers 404 and sets its cookie
            return response(request, 404, b"", "text/html")
        if url.netloc == "guce.yahoo.com":  # no consent form outside the EU
            return response(request, 200, b"<html><body></body></html>", "text/html")
        self.unexpected.append(full_url)
        return response(request, 404, b"")

    def close(self) -> None:
        pass
