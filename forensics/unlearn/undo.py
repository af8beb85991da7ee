"""UNDO (Lee et al., 2025, "Distillation Robustifies Unlearning"), whole or in some blocks: mix an
unlearned model's weights with freshly initialised ones at strength α (θ ← (1 − α) θ + α θ₀), then
distil the unlearned model's next-token distributions back into it on retain text, never the forget
facts, until the unlearning rule holds again.

It starts from an unlearned checkpoint, which is also the teacher (`unlearn(..., original=<it>)`
with `UnlearnSettings.baseline` the true original, whose retain the rule is relative to). `blocks`
None noises and trains every block (UNDO's global version, the embeddings and output layer left as
they are); a list noises and trains those blocks only, every other weight bit for bit the teacher's
(a located cure: `forensics cure` picks them from a study's information map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forensics.errors import InputError
from forensics.models.arch import arch_of
from forensics.models.tokens import logits_of

GRID = [{"lr": 1e-3, "alpha": 0.5, "blocks": None}]
DEMO = {"lr": 3e-3, "alpha": 0.5, "blocks": None}
STEPS = 500  # a cap: a run stops at the first check where retain is back above the rule's floor
REAL = {"lr": 3e-4, "alpha": 0.5, "blocks": None}
RETAIN_KEY = None  # a run that has not repaired retain is given a lower learning rate, as for GA
STREAMS = ("retain",)
FIXABLE = ("blocks", "alpha")


def resolve(params: dict, n_layers: int) -> dict:
    """Every block when `blocks` is None; else the listed blocks, checked, sorted, once each."""
    blocks = params.get("blocks")
    blocks = list(range(n_layers)) if blocks is None else sorted({int(b) for b in blocks})
    if not blocks or any(not 0 <= b < n_layers for b in blocks):
        raise InputError(f"UNDO blocks {params.get('blocks')}: choose among 0..{n_layers - 1}")
    if not 0 < params["alpha"] <= 1:
        raise InputError(f"UNDO alpha {params['alpha']}: the noise's share, in (0, 1]")
    return {**params, "blocks": blocks}


def trainable(model: torch.nn.Module, params: dict) -> list[torch.nn.Parameter]:
    """Every parameter of the chosen blocks."""
    arch = arch_of(model.config)
    return [p for b in params["blocks"] for p in arch.block_params(model, b).values()]


@torch.no_grad()
def prepare(model: torch.nn.Module, params: dict, seed: int) -> None:
    """Mix the chosen blocks' weights with a fresh initialisation (the model's own `_init_weights`
    on a copy of each module: normal weights, unit norms, zero biases), drawn from `seed`."""
    arch = arch_of(model.config)
    gen = torch.Generator().manual_seed(seed)
    alpha = params["alpha"]
    std = getattr(model.config, "initializer_range", 0.02)
    for b in params["blocks"]:
        for name, p in arch.block_params(model, b).items():
            if p.ndim == 1:  # norms start at one (or zero for an offset norm), biases at zero
                zero = name.endswith("bias") or arch.norm == "rms_offset"
                fresh = torch.zeros_like(p) if zero else torch.ones_like(p)
            else:
                fresh = (torch.randn(p.shape, generator=gen) * std).to(p.device, p.dtype)
            p.mul_(1 - alpha).add_(alpha * fresh)


def loss(params: dict, state: dict):
    """KL(teacher ‖ student) per token over every position of the retain rows."""
    teacher = state["reference"]

    def fn(model, batches):
        batch = batches["retain"]
        mask = batch["attention_mask"].bool()
        with torch.no_grad():
            target = F.log_softmax(logits_of(teacher, batch).float()[mask], -1)
        own = F.log_softmax(logits_of(model, batch).float()[mask], -1)
        return F.kl_div(own, target, log_target=True, reduction="batchmean")

    return fn
