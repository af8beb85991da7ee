"""Linear probes (with a control task and the original's probes transferred) and the logit lens at
every layer: where the answers can still be read."""

from __future__ import annotations

import numpy as np

from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, Panel, Series, everything
from forensics.measure.probing import ProbeSettings
from forensics.outcomes import Reading, unbits

READS = (
    ("probe_correct", "probe_on_control_facts", "probe"),
    ("lens_correct", "lens_on_control_facts", "logit lens"),
)


def run(ctx: Context) -> dict:
    from forensics.measure.probing import probe_models

    settings = ctx.settings("probes")
    return probe_models(ctx.models, ctx.sets, ctx.scorer, ctx.cache, settings, ctx.runtime, ctx.cfg.jobs())


def _layered(results: dict, model: str, column: int) -> dict[Reading, np.ndarray]:
    probes = results.get("probes", {})
    entry = probes.get("models", {}).get(model, {})
    out = {}
    for read in READS:
        for layer, row in zip(probes.get("layers", []), entry.get(read[column], []), strict=False):
            out[Reading(read[2], str(layer))] = unbits(row)[None]
    return out


def outcomes(results: dict, model: str) -> Outcomes:
    return {k: (v, everything(results)) for k, v in _layered(results, model, 0).items()}


def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
    return _layered(results, model, 1)


PROBE_PANEL, LENS_PANEL = (
    Panel(title="probe accuracy on V", unit=True),
    Panel(title="logit lens on forget", unit=True),
)


def draw(results: dict, model: str) -> dict[str, list[Series]]:
    """Per layer: the probe's accuracy on V (the method's, the original's, the never-learned's, the
    method's control task) and the logit lens's on the forget facts."""
    probes = results.get("probes")
    if not probes or model not in probes["models"]:
        return {}
    layers, runs = probes["layers"], probes["models"]
    shown = [(m, role) for m, role in ((model, "method"), ("original", "original")) if m in runs]
    shown += [("never_learned", "never_learned")] if "never_learned" in runs else []
    probe = [
        Series(name=m, x=layers, y=[p["acc"] for p in runs[m]["probe"]], color=role) for m, role in shown
    ]
    probe.append(
        Series(
            name=f"{model} (control task)",
            x=layers,
            y=[p["acc"] for p in runs[model]["control"]],
            color="control",
            dash="dot",
        )
    )
    lens = [
        Series(name=m, x=layers, y=[p["acc"] for p in runs[m]["lens"]["forget"]], color=role, legend=False)
        for m, role in shown
    ]
    return {PROBE_PANEL.title: probe, LENS_PANEL.title: lens}


# fewer L-BFGS iterations on the CPU grids: V accuracy within ±0.02 of the converged probe on the demo world
LIGHT = ProbeSettings(max_iter=100)

LENS = Lens(
    name="probes",
    kind=INFORMATION,
    run=run,
    settings=ProbeSettings,
    presets={"demo": LIGHT, "real": LIGHT},
    shares={"seeds": "seed"},  # the first of the study's seeds
    # 1: under `choice`, choice-scoring probes on each choice's statement (were answer classes); 2: beside
    # the statement, the lens's products at the positions that read the choice; 3: those products read
    # through the reference model's readout
    version=3,
    panels=(PROBE_PANEL, LENS_PANEL),
    schema=("layers.[]:layer", *(f"models.*.{k}.[].acc:num?" for k in ("probe", "control", "lens.forget"))),
    draw=draw,
    outcomes=outcomes,
    control_outcomes=control_outcomes,
)
