"""RIA (random incorrect answer): learn texts stating a wrong answer, `+ rc * NLL(retain)`."""

from __future__ import annotations

from forensics.unlearn.losses import mean_nll

GRID = [{"lr": lr, "rc": 1.0} for lr in (1e-3, 3e-3)]
DEMO = {"lr": 1e-3, "rc": 1.0}  # the point the full sweep picks on the default world
STEPS = 80
REAL = {"lr": 3e-4, "rc": 1.0}  # the first point on a pretrained ~100M model
RETAIN_KEY = "rc"  # what the adaptive sweep raises when a run costs too much retain
STREAMS = ("wrong", "retain")


def loss(params: dict, state: dict):
    def fn(model, batches):
        return mean_nll(model, batches["wrong"]) + params["rc"] * mean_nll(model, batches["retain"])

    return fn
