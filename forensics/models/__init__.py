"""Models: loading checkpoints, their architectures, runtime placement, scoring, the activation
cache, training."""
