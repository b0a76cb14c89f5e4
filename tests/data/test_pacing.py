"""The pacing every HTTP source shares: the doubling retry wait and the gap between requests,
on a fake clock whose ``sleep`` only advances it."""

from __future__ import annotations

import pytest

from tests.data.fake_http import FakeClock
from turbomode.data.sources.pacing import RateLimiter, back_off


def test_back_off_waits_nothing_before_the_first_try_then_doubles() -> None:
    clock = FakeClock(0.0)
    for tries in range(5):
        back_off(tries, 2.0, clock.sleep)
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0]


def test_back_off_of_zero_retries_at_once() -> None:
    clock = FakeClock(0.0)
    for tries in range(4):
        back_off(tries, 0.0, clock.sleep)
    assert clock.sleeps == []


def test_back_off_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="tries"):
        back_off(-1, 1.0, FakeClock(0.0).sleep)


def test_rate_limiter_waits_only_for_what_is_left_of_the_gap() -> None:
    clock = FakeClock(100.0)
    limiter = RateLimiter(1.0, clock.time, clock.sleep)
    limiter.wait()  # the first request goes at once
    limiter.wait()  # the next one right after waits the whole gap
    clock.now += 0.25
    limiter.wait()  # a quarter of the gap already passed
    clock.now += 5.0
    limiter.wait()  # long after: no wait
    assert clock.sleeps == [1.0, 0.75]
