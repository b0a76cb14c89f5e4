"""How the HTTP sources (Yahoo prices, Yahoo earnings, FRED) pace their requests: a minimum gap
between calls, so a long load stays polite, and a doubling wait before each retry, so a
struggling server gets ever longer to recover. One place, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable


class RateLimiter:
    """Keeps at least ``min_interval`` seconds between the starts of consecutive requests."""

    def __init__(
        self, min_interval: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.min_interval = min_interval
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None

    def wait(self) -> None:
        if self._last is not None:
            gap = self.min_interval - (self.clock() - self._last)
            if gap > 0:
                self.sleep(gap)
        self._last = self.clock()


def back_off(tries: int, backoff_s: float, sleep: Callable[[float], None]) -> None:
    """Wait before the next try after ``tries`` failed ones: nothing before the first try,
    then ``backoff_s``, doubling each retry (``backoff_s`` 0 retries at once)."""
    if tries < 0:
        raise ValueError(f"tries must be >= 0, got {tries}")
    if tries == 0:
        return
    delay = backoff_s * 2 ** (tries - 1)
    if delay > 0:
        sleep(delay)
