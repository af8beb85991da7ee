"""Causal localization: revert one block to the original's weights, patch one block's residual, and
RTT restricted to one block (an information lens per block: where relearning can bring the facts back)."""

from __future__ import annotations

import numpy as np

from forensics.attacks.relearn import RelearnSettings
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes
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
    outcomes=outcomes,
    action=action,
    rows={
        "revert": "forget gained: block reverted",
        "patch": "forget gained: residual patched",
    },
)
