"""What the fake Yahoo servers share (tests/data/test_yahoo.py, tests/data/test_earnings.py): a
clock the rate limiter sleeps on without sleeping, the record of each request, and the adapter
base that yfinance's real HTTP code talks to."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class FakeHttp(BaseAdapter):
    """A requests adapter answering every request in process; subclasses implement send()."""

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
