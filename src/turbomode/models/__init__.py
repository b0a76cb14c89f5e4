"""Models: the stacked ensemble, its persistence, honest validation, the gate and the registry."""
