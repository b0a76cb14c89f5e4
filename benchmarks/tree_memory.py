"""Peak memory of this process and all its descendants, sampled in a thread: what a stage costs
when its work runs in child processes (Ray's GCS, raylet and workers; a training run's tasks).

RSS counts a page shared by several processes once per process; PSS splits it among them, so
the summed PSS of a tree (``pss=True``) is what the tree really holds — the figure for Ray,
whose workers share the object store's pages."""

from __future__ import annotations

import threading


class TreeMemory:
    """``with TreeMemory() as mem: …`` then ``mem.peak`` (bytes); or ``start()`` / ``stop()``."""

    def __init__(self, interval: float = 0.5, pss: bool = False) -> None:
        import psutil

        self._me = psutil.Process()
        self._pss = pss
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _sample(self) -> int:
        total = 0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                info = proc.memory_full_info() if self._pss else proc.memory_info()
                total += info.pss if self._pss else info.rss
            except Exception:  # gone between listing and reading, or not ours to read
                continue
        return total

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(interval)

    def start(self) -> TreeMemory:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; the peak in bytes, the last moment included."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())
        return self.peak

    def __enter__(self) -> TreeMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
