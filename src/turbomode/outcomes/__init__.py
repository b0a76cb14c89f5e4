"""The feedback loop: outcomes of issued signals, training samples, retraining, replay."""
