"""The one Ray session the platform's jobs share: training, tuning, the Ray feature build and
the Ray offline store all join Ray the same way, so a job given ``compute.ray_address`` runs
every stage on that cluster and a laptop starts one local Ray for the whole job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from turbomode.config import Settings


@contextmanager
def ray_session(settings: Settings) -> Iterator[None]:
    """Use the running Ray, or start one (``compute.ray_address`` or local) and stop it after:
    a caller looping over models keeps one session instead of paying start-up each time."""
    with joined(settings.compute.ray_address):
        yield


@contextmanager
def joined(address: str | None) -> Iterator[None]:
    """:func:`ray_session` for a bare address (None: local), for callers that hold a Feast
    configuration rather than the settings."""
    import ray

    started = not ray.is_initialized()
    if started:
        if address:
            _connect(address)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


CLIENT_ATTEMPTS = 3


def _connect(address: str) -> None:
    """``ray.init`` at ``address``. A Ray Client (``ray://``) connection is tried again after a
    pause: the head starts a server per client, and on a busy head that start can fail once
    ("Starting Ray client server failed") where the next try succeeds."""
    import time

    import ray

    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except ConnectionError:
            if not address.startswith("ray://") or attempt == CLIENT_ATTEMPTS:
                raise
            ray.shutdown()
            time.sleep(2.0 * attempt)
