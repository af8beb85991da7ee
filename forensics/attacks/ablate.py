"""Direction ablation: is the hiding one direction in the residual stream?

Per layer ℓ the direction is mean(unlearned) − mean(original) residual at the final prompt position
on forget prompts, fitted on T only; it is projected out of the unlearned model's residual stream at
ℓ and every later layer (TransformerLens hooks), and V is re-scored. Rotated over V like RTT.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forensics.facts.core import Fact, Sets
from forensics.facts.formats import choice_context, letter_prompt
from forensics.models.cache import RESID, extract
from forensics.models.scoring import score
from forensics.outcomes import bits


def final_residuals(bridge, facts: Sequence[Fact], scorer: str) -> torch.Tensor:
    """Residual after every block at each fact's final prompt position, [layers, facts, d_model]."""
    prompt = letter_prompt if scorer.startswith("letter") else choice_context
    hooks = [RESID.format(layer) for layer in range(bridge.cfg.n_layers)]
    return extract(bridge, [prompt(f) for f in facts], hooks=hooks).stack()


def project_out(direction: torch.Tensor):
    """A hook that removes the component along `direction` from every position's residual."""
    unit = direction / direction.norm().clamp(min=1e-12)

    def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
        u = unit.to(resid.dtype)
        return resid - (resid @ u)[..., None] * u

    return hook


def ablated_score(bridge, tok, facts: Sequence[Fact], scorer: str, direction: torch.Tensor, layer: int):
    """Scores with `direction` projected out of the residual stream at `layer` and every later one."""
    hooks = [(RESID.format(later), project_out(direction)) for later in range(layer, bridge.cfg.n_layers)]
    with bridge.hooks(fwd_hooks=hooks):
        return score(bridge, tok, facts, scorer)


def forget_residuals(bridge, sets: Sets, scorer: str) -> torch.Tensor:
    """Final-position residuals of every forget fact (in `sets.forget_facts()` order), [layers, n, d]."""
    return final_residuals(bridge, sets.forget_facts(), scorer)


def ablate_attack(model, original_residuals: torch.Tensor, sets: Sets, scorer: str = "choice") -> dict:
    """Per V and layer: V accuracy of the unlearned `model` (a bridge) before and after ablating the
    direction fitted on T; `original_residuals` are the original's `forget_residuals`, computed once."""
    tok = model.tokenizer
    diff = forget_residuals(model, sets, scorer) - original_residuals
    splits = [f.split for f in sets.forget_facts()]
    out: dict = {"layers": list(range(model.cfg.n_layers)), "per_v": {}}
    for v, _, v_facts in sets.rotations():
        in_t = torch.tensor([s != v for s in splits])
        directions = diff[:, in_t].mean(dim=1)
        after = [
            ablated_score(model, tok, v_facts, scorer, directions[layer], layer) for layer in out["layers"]
        ]
        out["per_v"][v] = {
            "before": score(model, tok, v_facts, scorer).accuracy,
            "after": [s.accuracy for s in after],
            "after_correct": [bits(s.correct) for s in after],  # per layer, V facts in order
        }
    per_layer = [[r["after"][layer] for r in out["per_v"].values()] for layer in out["layers"]]
    out["mean_after"] = [sum(x) / len(x) for x in per_layer]
    out["mean_before"] = sum(r["before"] for r in out["per_v"].values()) / len(out["per_v"])
    out["best_layer"] = max(out["layers"], key=lambda layer: out["mean_after"][layer])
    return out
