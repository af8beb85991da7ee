"""RMU (Li et al., 2024): at layer ℓ push forget activations to `c * u` and hold retain activations
to the frozen original's, updating only layers ℓ-2..ℓ: every parameter of those blocks (`update`
"block") or, as the paper's recipe does, their MLP output projections alone ("mlp_out").

`c` is given relative to the mean residual norm at ℓ on forget prompts (it must exceed it), and
`u` is a fixed random unit vector drawn from the seed. Forward passes stop at ℓ: nothing after it
enters the loss. With `skip_shared`, the forget loss leaves out each forget text's first positions
whose context a retain text shares (the question's template before the fact): causal attention makes
their activations that retain text's, so the two terms would pull one activation two ways.
"""

from __future__ import annotations

import torch

from forensics.errors import InputError
from forensics.models.arch import arch_of

GRID = [{"lr": lr, "layer": None, "c": 3.0, "alpha": alpha} for lr in (3e-3, 1e-2) for alpha in (1.0, 10.0)]
DEMO = {
    "lr": 3e-3,
    "layer": None,
    "c": 3.0,
    "alpha": 1.0,
}  # the point the full sweep picks on the default world
STEPS = 150
REAL = {"lr": 3e-4, "layer": None, "c": 3.0, "alpha": 10.0}  # the first point on a pretrained ~100M model
RETAIN_KEY = "alpha"  # what the adaptive sweep raises when a run costs too much retain
STREAMS = ("forget", "retain")
FIXABLE = ("layer", "update")  # `forensics unlearn --rmu-layer`; `fixed` in the API


def resolve(params: dict, n_layers: int) -> dict:
    """Fill in the default layer (the middle one) and check it exists."""
    layer = n_layers // 2 if params.get("layer") is None else params["layer"]
    if not 0 <= layer < n_layers:
        raise InputError(f"RMU layer {layer} out of range (the model has layers 0..{n_layers - 1})")
    if params.get("update", "block") not in UPDATES:
        raise InputError(f"RMU update '{params['update']}': choose {', '.join(UPDATES)}")
    return {**params, "layer": layer}


UPDATES = ("block", "mlp_out")


def trainable(model: torch.nn.Module, params: dict) -> list[torch.nn.Parameter]:
    """The parameters of layers ℓ-2..ℓ (all of them, or their MLP output projections); every other
    parameter stays bit-for-bit the original's."""
    lo, hi = max(0, params["layer"] - 2), params["layer"]
    arch = arch_of(model.config)
    update = params.get("update", "block")
    return [
        p
        for i in range(lo, hi + 1)
        for n, p in arch.block_params(model, i).items()
        if update == "block" or arch.kind_of(n)[1] == update
    ]


def hidden(model: torch.nn.Module, batch: dict[str, torch.Tensor], layer: int, arch) -> torch.Tensor:
    """Residual stream after block `layer`, [batch, tokens, d_model]."""
    return arch.block_output(model, layer, batch["input_ids"], batch["attention_mask"], rest=False)[0]


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).mean(-1)[mask.bool()].mean()


def shared_prefixes(texts: list[list[int]]) -> set[tuple[int, ...]]:
    """Every prefix of these token ids: a forget position whose context is one of them has, by causal
    attention, exactly that retain text's activation there."""
    return {tuple(ids[:n]) for ids in texts for n in range(1, len(ids) + 1)}


def own_positions(batch: dict[str, torch.Tensor], prefixes: set) -> torch.Tensor:
    """The attention mask less each row's first positions whose context a retain text shares (a
    question's template before the fact: pushing them to `c u` pulls against holding retain there)."""
    mask = batch["attention_mask"].clone()
    for b, row in enumerate(batch["input_ids"].tolist()):
        n = 0
        while n < len(row) and tuple(row[: n + 1]) in prefixes:
            n += 1
        mask[b, :n] = 0
    return mask


def loss(params: dict, state: dict):
    reference, layer = state["reference"], params["layer"]
    arch = arch_of(reference.config)
    prefixes = shared_prefixes(state["retain_ids"]) if params.get("skip_shared") else set()
    with torch.no_grad():
        probe = state["forget_sample"]
        norms = hidden(reference, probe, layer, arch).norm(dim=-1)[probe["attention_mask"].bool()]
        gen = torch.Generator().manual_seed(state["seed"])
        u = torch.rand(reference.config.hidden_size, generator=gen)
        target = (params["c"] * norms.mean() * u / u.norm()).to(norms.device)

    def fn(model, batches):
        forget, retain = batches["forget"], batches["retain"]
        f = hidden(model, forget, layer, arch)
        with torch.no_grad():
            r0 = hidden(reference, retain, layer, arch)
        r = hidden(model, retain, layer, arch)
        return _masked_mse(f, target, own_positions(forget, prefixes)) + params["alpha"] * _masked_mse(
            r, r0, retain["attention_mask"]
        )

    return fn
