"""Probes over cached activations: tensors in, metrics out. Never loads a model."""
