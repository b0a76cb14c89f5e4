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

log = logging.getLogger("turbomode.job_metrics")


# The job-specific gauges, declared once: a job sets the ones it measures, and the chart's alert
# rules and dashboards are checked against this list (tests/deploy).
JOB_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "turbomode_features_latest_timestamp_seconds": (
        "Event time (Unix seconds) of the newest feature rows loaded into the online store",
        (),
    ),
    "turbomode_scan_bar_timestamp_seconds": (
        "Close (Unix seconds, 16:00 New York) of the newest bar in the clean store when the scan "
        "ran",
        (),
    ),
    "turbomode_scan_new_bar": (
        "1 if the scan's newest bar is newer than the last scan's, 0 if no new data arrived",
        (),
    ),
    "turbomode_scan_stale_features": (
        "Symbols not scored because their newest feature vector is older than the scan date",
        (),
    ),
    "turbomode_signal_hit_rate": (
        "Share of signals judged correct among those resolved in the rolling window, by horizon",
        ("horizon",),
    ),
    "turbomode_signal_outcomes_window": (
        "Signals resolved in the rolling window (the hit rate's sample size), by horizon",
        ("horizon",),
    ),
    "turbomode_retrain_consecutive_refusals": (
        "Completed retrains in a row that promoted nothing (0 after a promotion)",
        (),
    ),
    "turbomode_feature_drift_features": (
        "Features of a production model whose PSI against its training window exceeds the "
        "threshold (0.1, 0.25, or 'usual': the 99th percentile of the training period's own "
        "windows), by window (tonight's cross-section or the last 20 trading days)",
        ("sector", "horizon", "window", "threshold"),
    ),
    "turbomode_feature_drift_psi": (
        "PSI of the ten most drifted features of a production model over the last 20 days",
        ("sector", "horizon", "window", "feature"),
    ),
    "turbomode_prediction_drift_psi": (
        "PSI of a production model's scores (P(BUY) - P(SELL)) against its out-of-time scores",
        ("sector", "horizon", "window"),
    ),
    "turbomode_prediction_drift_usual_psi": (
        "The 99th percentile of the score PSI of the out-of-time period's own windows",
        ("sector", "horizon", "window"),
    ),
    "turbomode_candidate_rank_ic": (
        "Out-of-time mean daily rank IC of the last trained candidate, by sector and horizon",
        ("sector", "horizon"),
    ),
    "turbomode_candidate_balanced_accuracy": (
        "Out-of-time balanced accuracy of the last trained candidate, by sector and horizon",
        ("sector", "horizon"),
    ),
    "turbomode_production_models": (
        "Tasks (sector x horizon) with a model in production after the run",
        (),
    ),
}


@dataclass
class JobMetrics:
    """Metrics of one batch job run."""

    job: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _gauges: dict[str, Gauge] = field(default_factory=dict, repr=False)

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

    def gauge(self, name: str) -> Gauge:
        """One of the declared ``JOB_GAUGES``, created in this run's registry on first use."""
        if name not in JOB_GAUGES:
            raise KeyError(f"undeclared job gauge {name!r}: declare it in JOB_GAUGES")
        if name not in self._gauges:
            doc, labels = JOB_GAUGES[name]
            self._gauges[name] = Gauge(name, doc, labels, registry=self.registry)
        return self._gauges[name]

    def push(self, gateway: str | None) -> bool:
        """Push to the gateway; a monitoring outage must never fail the job itself.

        POST (pushadd) replaces only the metrics this push carries, and a failed run does not
        carry ``last_success``: the gateway keeps the previous success time, so a "no success
        in N hours" alert counts from the last success, not from the last failure.
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
