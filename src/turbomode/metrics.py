"""Prometheus metrics for batch jobs, pushed to a Pushgateway when one is configured.

Batch jobs end before a scrape could reach them, so each job records into its own registry
and pushes once at the end (success or failure) under ``job=turbomode_<name>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, pushadd_to_gateway

from turbomode.logs import event

log = logging.getLogger("turbomode.metrics")


@dataclass
class JobMetrics:
    """Metrics of one batch job run."""

    job: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.duration = Gauge(
            "turbomode_job_duration_seconds", "Wall time of the last run", registry=self.registry
        )
        self.last_success = Gauge(
            "turbomode_job_last_success_timestamp_seconds",
            "Unix time of the last successful run",
            registry=self.registry,
        )
        self.success = Gauge(
            "turbomode_job_success", "1 if the last run succeeded, else 0", registry=self.registry
        )
        self.rows = Counter(
            "turbomode_job_rows", "Rows handled, by stage", ["stage"], registry=self.registry
        )

    def push(self, gateway: str | None) -> bool:
        """Push to the gateway; a monitoring outage must never fail the job itself.

        POST (pushadd) replaces only the metrics this push carries, and a failed run does not
        carry ``last_success``: the gateway keeps the previous success time, so a "no success
        in 26 h" alert counts from the last success, not from the last failure.
        """
        if not gateway:
            return False
        try:
            pushadd_to_gateway(
                gateway, job=f"turbomode_{self.job}", registry=self.registry, timeout=5
            )
        except OSError as exc:
            event(log, "metrics.push_failed", logging.WARNING, gateway=gateway, error=str(exc))
            return False
        return True


@contextmanager
def job_metrics(job: str, gateway: str | None) -> Iterator[JobMetrics]:
    """Time a job, mark success or failure, push at the end."""
    metrics = JobMetrics(job)
    start = time.perf_counter()
    try:
        yield metrics
    except BaseException:
        metrics.success.set(0)
        metrics.registry.unregister(metrics.last_success)
        raise
    else:
        metrics.success.set(1)
        metrics.last_success.set_to_current_time()
    finally:
        metrics.duration.set(time.perf_counter() - start)
        metrics.push(gateway)
