"""The batch jobs and their steps: the one definition of what runs on each schedule.

Keys are the fields of :class:`turbomode.config.ScheduleSettings` (the one definition of
*when*). Each step is a ``turbomode`` command line. The chart's CronWorkflows run exactly these
steps, in this order (``cronWorkflows.jobs.<job>.steps`` in ``charts/turbomode/values.yaml``;
``tests/deploy`` fails when they differ), and the Kubeflow pipelines of the same jobs run the
same library functions in the same order (``tests/pipelines`` checks the step names). The
chain a night runs:

ingest the new bars (its last step refreshes the macro series: from FRED with
``macro.source: fred``, see :func:`turbomode.data.ingest.refresh_macro`) → features for the new
day → materialize into the online store → scan → Smart Scanner → paper wallet (off until a
wallet is created).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One step of a job: its name (the Argo step and KFP task display name, slugged) and
    the ``turbomode`` arguments it runs. ``enabled``: the chart's default."""

    name: str
    args: tuple[str, ...]
    enabled: bool = True


# The paper wallet the nightly chain moves when its step is enabled (`turbomode wallet create
# paper --rules atr` once, then set cronWorkflows.jobs.nightly_scan.steps[paper-wallet]).
PAPER_WALLET = "paper"

JOBS: dict[str, tuple[Step, ...]] = {
    "nightly_scan": (
        Step("ingest", ("ingest",)),
        Step("build-features", ("features", "build")),
        Step("materialize", ("features", "materialize")),
        Step("scan", ("scan",)),
        Step("smart-scan", ("smart-scan",)),
        Step("paper-wallet", ("wallet", "run", PAPER_WALLET, "--manage-only"), enabled=False),
    ),
    "outcomes": (Step("track-outcomes", ("outcomes", "track")),),
    "training_samples": (Step("generate-samples", ("outcomes", "samples")),),
    "retrain": (Step("retrain", ("retrain",)), Step("report", ("report", "retrain", "--send"))),
    "adaptive_ranking": (Step("ranking", ("ranking", "update")),),
    "universe_curation": (Step("curate", ("universe", "curate")),),
    "daily_report": (Step("report", ("report", "daily", "--send")),),
    "weekly_report": (Step("report", ("report", "weekly", "--send")),),
}

# The Kubeflow pipeline that runs the same chain as a job (tests/pipelines checks that its
# tasks, in dependency order, are the job's steps — the pipeline may stop before the optional
# tail: the Smart Scanner and the paper wallet run only on the CronWorkflow).
PIPELINE_OF_JOB: dict[str, str] = {
    "nightly_scan": "nightly-scan",
    "outcomes": "outcomes",
    "training_samples": "weekly-samples",
    "retrain": "monthly-retrain",
}


def enabled_steps(job: str) -> tuple[Step, ...]:
    """The steps a job runs by default."""
    return tuple(s for s in JOBS[job] if s.enabled)
