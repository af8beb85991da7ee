"""GA: gradient ascent on the forget texts (maximise their NLL)."""

from __future__ import annotations

from forensics.unlearn.losses import mean_nll

GRID = [{"lr": lr} for lr in (1e-4, 1.5e-4, 2e-4, 3e-4)]
DEMO = {"lr": 1e-4}  # the point the full sweep picks on the default world
STEPS = 40
REAL = {"lr": 1e-4}  # the first point on a pretrained ~100M model
RETAIN_KEY = None  # no retain term: the adaptive sweep lowers the learning rate instead
STREAMS = ("forget",)


def loss(params: dict, state: dict):
    def fn(model, batches):
        return -mean_nll(model, batches["forget"])

    return fn
