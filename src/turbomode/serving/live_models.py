"""Production ensembles for a long-running service: loaded on first use, kept in an LRU, and
swapped in the background when the registry's production pointer moves.

:class:`turbomode.signals.scan.ModelCache` suits a batch job: it reads the pointer on every
``get`` and loads a new version inline. A service must not do either inside requests: several
threads share the cache, and a request that meets a promotion would wait for a whole ensemble
to load (or two requests would load it twice). Here a request only looks the model up; the
first request for a key loads it (once, other requests for that key wait for that load), and
:meth:`LiveModels.refresh` — called by the service's watcher every few seconds and by
``/admin/reload`` — reads the pointers, loads each new version *beside* the old one and then
replaces the reference in one assignment under the lock. Requests in flight keep the model
object they hold, so none fails during a swap.

``get`` has ModelCache's contract (``(model, version)`` or None without production), so
:func:`turbomode.signals.scan.score_universe` takes either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from turbomode.logs import event
from turbomode.models.loading import Scorer, load_ensemble

log = logging.getLogger("turbomode.serving.models")


@dataclass(frozen=True)
class Loaded:
    """One production ensemble in memory."""

    version: str
    model: Scorer
    loaded_at: float
    load_seconds: float


@dataclass(frozen=True)
class Swap:
    """A key whose served version changed (``new`` None: production was withdrawn)."""

    key: str
    old: str | None
    new: str | None


class LiveModels:
    """Thread-safe LRU of production ensembles keyed by registry key (see the module notes)."""

    def __init__(
        self,
        registry: Any,
        maxsize: int = 33,
        threads: int = 1,
        inference: Literal["fast", "native"] = "fast",
        on_load: Callable[[str, Loaded], None] | None = None,
        on_swap: Callable[[Swap], None] | None = None,
    ) -> None:
        self.registry = registry
        self.maxsize = maxsize
        self.threads = threads
        self.inference: Literal["fast", "native"] = inference
        self._on_load = on_load or (lambda _k, _l: None)
        self._on_swap = on_swap or (lambda _s: None)
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._absent: set[str] = set()  # keys seen without production; refresh() rechecks
        self.generation = 0  # bumped on every swap: results computed before it are stale

    # ---- requests ----------------------------------------------------------------------
    def get(self, key: str) -> tuple[Scorer, str] | None:
        """The served ensemble of ``key`` and its version, or None without production."""
        with self._lock:
            entry = self._models.get(key)
            if entry is not None:
                self._models.move_to_end(key)
                return entry.model, entry.version
            if key in self._absent:
                return None
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per key; requests for other keys go on
            with self._lock:
                entry = self._models.get(key)
                if entry is not None:
                    return entry.model, entry.version
            version = self.registry.production(key)
            if version is None:
                with self._lock:
                    self._absent.add(key)
                return None
            loaded = self._load(key, version)
            with self._lock:
                self._models[key] = loaded
                while len(self._models) > self.maxsize:
                    self._models.popitem(last=False)
            self._on_load(key, loaded)
            return loaded.model, loaded.version

    def version(self, key: str) -> str | None:
        """The version served for ``key`` if it is loaded (no registry read, no load)."""
        with self._lock:
            entry = self._models.get(key)
        return None if entry is None else entry.version

    def loaded(self) -> dict[str, Loaded]:
        """A snapshot of what is in memory, least recently used first."""
        with self._lock:
            return dict(self._models)

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    # ---- the watcher -------------------------------------------------------------------
    def refresh(self) -> list[Swap]:
        """Follow the production pointers of every loaded or known-absent key.

        A changed version is loaded outside the lock while requests go on with the old one,
        then swapped in; a withdrawn pointer drops the model. A load that fails leaves the old
        version serving (logged; the next refresh tries again).
        """
        with self._lock:
            served = {k: e.version for k, e in self._models.items()}
            absent = set(self._absent)
        swaps: list[Swap] = []
        for key, old in served.items():
            try:
                new = self.registry.production(key)
                if new == old:
                    continue
                loaded = None if new is None else self._load(key, new)
            except Exception as exc:  # the old version keeps serving
                event(log, "serving.model_refresh_failed", logging.ERROR, key=key, error=str(exc))
                continue
            with self._lock:
                if loaded is None:
                    self._models.pop(key, None)
                    self._absent.add(key)
                elif key in self._models:
                    self._models[key] = loaded  # the atomic swap
                else:  # evicted meanwhile: keep the fresh load, it is production now
                    self._models[key] = loaded
                self.generation += 1
            if loaded is not None:
                self._on_load(key, loaded)
            swap = Swap(key, old, new)
            swaps.append(swap)
            event(log, "serving.model_swapped", key=key, old=old, new=new)
            self._on_swap(swap)
        for key in absent:
            try:
                version = self.registry.production(key)
            except Exception as exc:
                event(log, "serving.model_refresh_failed", logging.ERROR, key=key, error=str(exc))
                continue
            if version is not None:
                with self._lock:
                    self._absent.discard(key)  # the next request loads it
                    self.generation += 1
                swaps.append(Swap(key, None, version))
        return swaps

    def _load(self, key: str, version: str) -> Loaded:
        t0 = time.perf_counter()
        directory, _ = self.registry.load(key, version)
        model = load_ensemble(directory, threads=self.threads, inference=self.inference)
        loaded = Loaded(version, model, time.time(), time.perf_counter() - t0)
        event(log, "serving.model_loaded", key=key, version=version, seconds=loaded.load_seconds)
        return loaded
