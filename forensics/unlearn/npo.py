"""NPO (negative preference optimisation, Zhang et al. 2024) against the frozen original.

`-(2/beta) * log sigmoid(-beta * (log p(forget) - log p_ref(forget))) + rc * NLL(retain)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forensics.unlearn.losses import mean_nll, sequence_logprob

GRID = [{"lr": lr, "beta": 0.1, "rc": 1.0} for lr in (3e-4, 1e-3, 3e-3)]
DEMO = {"lr": 3e-3, "beta": 0.1, "rc": 1.0}  # the point the full sweep picks on the default world
STEPS = 60
REAL = {"lr": 3e-4, "beta": 0.1, "rc": 1.0}  # the first point on a pretrained ~100M model
RETAIN_KEY = "rc"  # what the adaptive sweep raises when a run costs too much retain
STREAMS = ("forget", "retain")


def loss(params: dict, state: dict):
    reference = state["reference"]
    beta = params["beta"]

    def fn(model, batches):
        forget = batches["forget"]
        with torch.no_grad():
            ref = sequence_logprob(reference, forget)
        ratio = sequence_logprob(model, forget) - ref
        npo = -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()
        return npo + params["rc"] * mean_nll(model, batches["retain"])

    return fn
