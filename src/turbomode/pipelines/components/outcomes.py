"""The outcome loop: how signals turned out → training samples → the monthly retrain
(``turbomode.outcomes``). Each step publishes its job's result: the whole of it as JSON, its
figures as metrics."""

from kfp.dsl import Dataset, Metrics, Output


def track_outcomes(
    config: str,
    outcomes: Output[Dataset],
    metrics: Output[Metrics],
    as_of: str = "",
) -> None:
    """Record how past signals turned out, up to ``as_of`` (empty: the newest bar)."""
    from datetime import date

    from turbomode.outcomes.track import track_outcomes as run_track
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config)
    result = run_track(settings, as_of=date.fromisoformat(as_of) if as_of else None)
    rt.publish_result(result, outcomes, metrics)


def generate_samples(
    config: str,
    samples: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """Turn tracked outcomes into training samples."""
    from turbomode.outcomes.samples import generate_samples as run_samples
    from turbomode.pipelines import runtime as rt

    rt.publish_result(run_samples(rt.settings(config)), samples, metrics)


def retrain(
    config: str,
    result: Output[Dataset],
    metrics: Output[Metrics],
    min_samples: int = 0,
    sectors: str = "",
    ray_address: str = "",
) -> None:
    """Retrain on the accumulated samples when there are at least ``min_samples`` (0: the
    settings' threshold), gate, and promote or keep. Empty ``sectors``: all."""
    from turbomode.outcomes.retrain import retrain as run_retrain
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config, ray_address)
    done = run_retrain(settings, min_samples=min_samples or None, sectors=rt.split_list(sectors))
    rt.publish_result(done, result, metrics)
