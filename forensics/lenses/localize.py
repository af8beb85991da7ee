"""Causal localization: revert one block to the original's weights, patch one block's residual, and
RTT restricted to one block (an information lens per block: where relearning can bring the facts back)."""

from __future__ import annotations

import numpy as np

from forensics.attacks.relearn import RelearnSettings
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, Panel, Series
from forensics.lenses.relearn import SHARES
from forensics.outcomes import Reading, unbits


def run(ctx: Context) -> dict:
    from forensics.measure.localize import localize_section

    return localize_section(
        ctx.cfg.original,
        ctx.others,
        ctx.sets,
        ctx.settings("localize"),
        ctx.progress,
        ctx.runtime,
        ctx.cfg.jobs(),
    )


def localized_layers(loc: dict) -> list[int]:
    """The blocks a localization measured (every block unless its settings named some)."""
    return list(loc.get("layers", range(len(loc["revert"]))))


def outcomes(results: dict, model: str) -> Outcomes:
    loc = results.get("localize", {}).get(model)
    if not loc:
        return {}
    splits = results["facts"]["splits"]
    out = {}
    for layer, entry in zip(localized_layers(loc), loc["layer_rtt"], strict=True):
        vs = list(entry["per_v"])
        facts = [i for i, s in enumerate(splits) if s in vs]
        out[Reading("layer RTT", str(layer))] = (np.stack([unbits(r) for r in entry["correct"]]), facts)
    return out


def action(results: dict, model: str) -> dict | None:
    """Forget accuracy gained by reverting or patching each block (the last block's patch is the
    original's output by construction and left out); blocks not localized are None."""
    loc = results.get("localize", {}).get(model)
    if not loc:
        return None
    before = loc["before"]["forget"]
    measured = localized_layers(loc)
    n = len(loc["dynamics"]["points"][0]["cosine"])  # every block (the dynamics measure them all)
    revert = dict(zip(measured, loc["revert"], strict=True))
    patched = dict(zip(measured, loc["patch"], strict=True))
    return {
        "layers": [str(i) for i in range(n)],
        "revert": [revert[i]["forget"] - before if i in revert else None for i in range(n)],
        "patch": [patched[i]["forget"] - before if i in patched and i < n - 1 else None for i in range(n)],
    }


FORGET_PANEL = Panel(title="forget accuracy after revert / patch / layer-RTT", unit=True)
DYNAMICS_PANEL = Panel(title="RTT update vs −ΔW (cosine, per epoch)")


def draw(results: dict, model: str) -> dict[str, list[Series]]:
    """Per localized block: forget accuracy after reverting it, patching its residual, and RTT on it
    alone (beside the unlearned model's); per block and epoch, the RTT update's cosine with −ΔW."""
    loc = results.get("localize", {}).get(model)
    if not loc:
        return {}
    blocks = [str(i) for i in localized_layers(loc)]
    forget = [
        Series(name="revert layer", x=blocks, y=[r["forget"] for r in loc["revert"]], color="#dd6b20"),
        Series(name="patch residual", x=blocks, y=[r["forget"] for r in loc["patch"]], color="#319795"),
        Series(
            name="RTT on this layer only (V)",
            x=blocks,
            y=[r["acc_v"] for r in loc["layer_rtt"]],
            color="#b83280",
        ),
        Series(
            name="unlearned, as is",
            x=blocks,
            y=[loc["before"]["forget"]] * len(blocks),
            color="#a0aec0",
            dash="dot",
        ),
    ]
    dynamics = [  # every block, whichever blocks were localized
        Series(
            name=f"after epoch {p['epoch']}",
            x=[str(i) for i in range(len(p["cosine"]))],
            y=p["cosine"],
            legend=False,
        )
        for p in loc["dynamics"]["points"][1:]
    ]
    return {FORGET_PANEL.title: forget, DYNAMICS_PANEL.title: dynamics}


LAYER_RTT = {"patience": 1, "score_retain": False, "rotations": 1, "seeds": (0,)}  # one rotation, V only
PRESETS = {
    "full": RelearnSettings(lrs=(1e-3,), epochs=4),
    "demo": RelearnSettings(lrs=(1e-3,), epochs=2, **LAYER_RTT),
    # SmolLM2 on 2 CPU cores: at every fifth block and the last
    "real": RelearnSettings(
        lrs=(1e-4,), epochs=2, batch_size=8, layers=(0, 5, 10, 15, 20, 25, 29), **LAYER_RTT
    ),
    "paper": RelearnSettings(lrs=(1e-4,), epochs=4, batch_size=8, rotations=1),
}

LENS = Lens(
    name="localize",
    kind=INFORMATION,
    run=run,
    settings=RelearnSettings,
    presets=PRESETS,
    shares=SHARES,
    panels=(FORGET_PANEL, DYNAMICS_PANEL),
    schema=(
        "*.?layers.[]:layer",
        *(f"*.{k}.[].forget:num?" for k in ("revert", "patch")),
        "*.layer_rtt.[].acc_v:num?",
        "*.before.forget:num?",
        "*.dynamics.points.[].epoch",
        "*.dynamics.points.[].cosine:list",
    ),
    draw=draw,
    outcomes=outcomes,
    action=action,
    rows={
        "revert": "forget gained: block reverted",
        "patch": "forget gained: residual patched",
    },
)
