"""GD (gradient difference): ascend on forget, descend on retain: `-NLL(forget) + rc * NLL(retain)`."""

from __future__ import annotations

from forensics.unlearn.losses import mean_nll

GRID = [{"lr": lr, "rc": rc} for lr in (3e-4, 1e-3) for rc in (1.0, 3.0)]
DEMO = {"lr": 1e-3, "rc": 3.0}  # the point the full sweep picks on the default world
STEPS = 60
# the first point on a pretrained ~100M model: on SmolLM2 (2 × 68 forget facts, 43 steps) rc = 1 lost
# retain on both kinds and the sweep's second run, rc = 3, met the rule on both
REAL = {"lr": 3e-4, "rc": 3.0}
RETAIN_KEY = "rc"  # what the adaptive sweep raises when a run costs too much retain
STREAMS = ("forget", "retain")


def loss(params: dict, state: dict):
    def fn(model, batches):
        return -mean_nll(model, batches["forget"]) + params["rc"] * mean_nll(model, batches["retain"])

    return fn
