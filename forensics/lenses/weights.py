"""Weight diff, streamed tensor by tensor: where (and how much, ‖ΔW‖/‖W‖) each method changed the
original."""

from __future__ import annotations

from forensics.lenses.base import ACTION, Context, Lens


def run(ctx: Context) -> dict:
    from forensics.measure.localize import weights_section

    return weights_section(ctx.cfg.original, ctx.others)


def action(results: dict, model: str) -> dict | None:
    weights = results.get("weights", {}).get(model)
    if not weights:
        return None
    layers = sorted((k for k in weights["layers"] if k.isdigit()), key=int)
    return {"layers": layers, "dW_rel": [weights["layers"][k]["all"]["rel"] for k in layers]}


LENS = Lens(name="weights", kind=ACTION, run=run, action=action, rows={"dW_rel": "‖ΔW‖/‖W‖"})
