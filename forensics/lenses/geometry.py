"""Edit geometry: per matrix and block, the spectral norm ‖ΔW‖₂ and stable rank ‖ΔW‖²_F / ‖ΔW‖²₂ of
each method's update (the never-learned control's beside them): surgical low-rank edits versus
diffuse drift. Read from the streamed weight diff (its Gram matrices), streamed afresh when the
weights lens did not run.
"""

from __future__ import annotations

import numpy as np

from forensics.lenses.base import ACTION, Context, Lens

LOW_RANK = 0.5  # a method's median stable rank below this × the control's: a low-rank edit


def geometry(diff: dict) -> dict:
    """Per block: the median stable rank and the largest spectral norm over its changed matrices;
    overall: the median stable rank and how many matrices changed."""
    per: dict[str, list] = {}
    ranks = []
    for t in diff["tensors"]:
        if "stable_rank" not in t or t["fro"] == 0:
            continue
        ranks.append(t["stable_rank"])
        if t["layer"] is not None:
            per.setdefault(str(t["layer"]), []).append((t["stable_rank"], t["top_sv"][0]))
    layers = sorted(per, key=int)
    return {
        "layers": layers,
        "stable_rank": [float(np.median([r for r, _ in per[k]])) for k in layers],
        "spectral": [max(s for _, s in per[k]) for k in layers],
        "median_stable_rank": float(np.median(ranks)) if ranks else None,
        "matrices_changed": len(ranks),
    }


def low_rank(models: dict[str, dict], control: str = "never_learned") -> dict[str, bool]:
    """Per method: whether its median stable rank is below LOW_RANK × the control's (no statement
    without a control, or for a method that changed no matrix)."""
    ref = models.get(control, {}).get("median_stable_rank")
    return {
        name: g["median_stable_rank"] < LOW_RANK * ref
        for name, g in models.items()
        if name != control and ref and g["median_stable_rank"] is not None
    }


def run(ctx: Context) -> dict:
    diffs = ctx.results.get("weights")
    if diffs is None:
        from forensics.measure.localize import weights_section

        diffs = weights_section(ctx.cfg.original, ctx.others)
    models = {name: geometry(d) for name, d in diffs.items()}
    return {"models": models, "low_rank": low_rank(models), "threshold": LOW_RANK}


def action(results: dict, model: str) -> dict | None:
    g = results.get("geometry", {}).get("models", {}).get(model)
    if not g or not g["layers"]:
        return None
    return {"layers": g["layers"], "stable_rank": g["stable_rank"]}


LENS = Lens(
    name="geometry",
    kind=ACTION,
    run=run,
    action=action,
    rows={"stable_rank": "stable rank of ΔW"},
    needs=("weights",),  # reuses its diffs when it ran (else computes them)
)
