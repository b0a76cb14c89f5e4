"""A clock the rate limiter sleeps on without sleeping, and the record of each request the fake
Yahoo adapters answer (tests/data/test_yahoo.py, tests/data/test_earnings.py)."""

from __future__ import annotations

from dataclasses import dataclass


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
