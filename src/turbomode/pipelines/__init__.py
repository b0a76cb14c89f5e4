"""Kubeflow Pipelines: the components (thin adapters over ``turbomode``), the pipelines built
from them, their compilation to YAML, local runs through ``kfp.local`` and submission to a
KFP endpoint. ``turbomode.pipelines.runtime`` is what the components use inside their
container; everything else needs the ``pipelines`` extra (kfp, kfp-kubernetes)."""
