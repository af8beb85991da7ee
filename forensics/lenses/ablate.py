"""Direction ablation: project the original-vs-method mean difference out of each layer's residual
and see whether the forget answers return."""

from __future__ import annotations

from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, everything
from forensics.outcomes import Reading, unbits


def run(ctx: Context) -> dict:
    from forensics.attacks.ablate import ablate_attack, forget_residuals
    from forensics.models.checkpoint import boot_bridge

    original = forget_residuals(boot_bridge(ctx.cfg.original, runtime=ctx.runtime), ctx.sets, ctx.scorer)
    return {
        n: ablate_attack(boot_bridge(p, runtime=ctx.runtime), original, ctx.sets, ctx.scorer)
        for n, p in ctx.others.items()
    }


def outcomes(results: dict, model: str) -> Outcomes:
    ablate = results.get("ablate", {}).get(model)
    if not ablate:
        return {}
    out = {}
    for layer in ablate["layers"]:
        row = "".join(ablate["per_v"][v]["after_correct"][layer] for v in ablate["per_v"])
        out[Reading("ablation", str(layer))] = (unbits(row)[None], everything(results))
    return out


LENS = Lens(name="ablate", kind=INFORMATION, run=run, outcomes=outcomes)
