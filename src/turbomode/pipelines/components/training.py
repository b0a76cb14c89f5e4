"""Training: every sector × horizon ensemble on Ray, the gate's decisions, promotion
(``turbomode.models``)."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output


def train(
    config: str,
    features: Input[Dataset],
    run: Output[Dataset],
    candidates: Output[Model],
    metrics: Output[Metrics],
    sectors: str = "",
    ray_address: str = "",
) -> None:
    """Train, evaluate out of time beside the baselines, register and gate every task on Ray
    (``run_training``), leaving production alone: the promote step applies the decisions once
    the whole run is in. ``ray_address`` empty: the settings, then RAY_ADDRESS, then a Ray
    started inside this step. Artifacts: the run report and the registered versions."""
    from turbomode.models.pipeline import run_training
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config, ray_address)
    rt.expect_same_store(features, settings)
    result = run_training(settings, rt.split_list(sectors), use_ray=True, promote=False)
    rt.copy_file(result.report_paths["json"], run)
    run.metadata.update(rt.store_location(settings), run_id=result.run_id)
    rt.write_json(candidates, result.versions)
    candidates.metadata.update(rt.store_location(settings), run_id=result.run_id)
    rt.log_metrics(
        metrics,
        {
            "tasks": len(result.results),
            "trained": sum(r.ok for r in result.results),
            "failed": sum(not r.ok for r in result.results),
            "registered": len(result.versions),
        },
    )


def evaluate_and_gate(
    config: str,
    run: Input[Dataset],
    decisions: Output[Dataset],
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> None:
    """Publish the run's out-of-time evaluation and the gate's decision for every registered
    candidate: the Markdown report, and as metrics the mean rank IC and balanced accuracy of
    the ensembles beside each baseline on the same rows."""
    from turbomode.pipelines import runtime as rt
    from turbomode.workspace import Workspace

    settings = rt.settings(config)
    rt.expect_same_store(run, settings)
    payload = rt.read_json(run)
    markdown = Workspace.of(settings).reports_dir / f"train_{payload['run_id']}.md"
    rt.copy_file(markdown, report)
    gated = {
        key: {"version": payload["versions"][key], "gate": gate}
        for key, gate in payload["gates"].items()
    }
    rt.write_json(decisions, gated)
    decisions.metadata.update(rt.store_location(settings), run_id=payload["run_id"])
    rt.log_metrics(metrics, rt.evaluation_figures(payload))


def promote(
    config: str,
    decisions: Input[Dataset],
    production: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Make production every candidate the gate accepted (``apply_decision``: checksums
    verified, idempotent so a retry is safe, rejected keys untouched); the artifact maps each
    key to its production version after this step."""
    from turbomode.models.gate import GateReport, apply_decision
    from turbomode.models.registry import ModelRegistry
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config)
    rt.expect_same_store(decisions, settings)
    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    promoted = rejected = 0
    for key, decided in sorted(rt.read_json(decisions).items()):
        gate = GateReport.from_dict(decided["gate"])
        if apply_decision(gate, registry, key, decided["version"]):
            promoted += 1
        else:
            rejected += 1
    current = {key: registry.production(key) for key in registry.list_keys()}
    rt.write_json(production, current)
    production.metadata.update(rt.store_location(settings))
    rt.log_metrics(
        metrics,
        {
            "promoted": promoted,
            "rejected": rejected,
            "keys_in_production": sum(v is not None for v in current.values()),
        },
    )
