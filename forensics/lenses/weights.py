"""Weight diff, streamed tensor by tensor: where (and how much, ‖ΔW‖/‖W‖) each method changed the
original."""

from __future__ import annotations

from forensics.lenses.base import ACTION, Context, Lens, Panel, Series


def run(ctx: Context) -> dict:
    from forensics.measure.localize import weights_section

    return weights_section(ctx.cfg.original, ctx.others)


def action(results: dict, model: str) -> dict | None:
    weights = results.get("weights", {}).get(model)
    if not weights:
        return None
    layers = sorted((k for k in weights["layers"] if k.isdigit()), key=int)
    return {"layers": layers, "dW_rel": [weights["layers"][k]["all"]["rel"] for k in layers]}


KINDS_ORDER = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "mlp_gate", "mlp_in", "mlp_out", "norm"]
PANEL = Panel(title="‖ΔW‖/‖W‖ by module")


def draw(results: dict, model: str) -> dict[str, list[Series]]:
    """Per block, ‖ΔW‖/‖W‖ of each kind of module (bars)."""
    weights = results.get("weights", {}).get(model)
    if not weights:
        return {}
    layers = weights["layers"]
    blocks = sorted((k for k in layers if k != "none"), key=int)
    kinds = [k for k in KINDS_ORDER if any(k in layers[b] for b in blocks)]
    bars = [
        Series(name=k, x=blocks, y=[layers[b].get(k, {}).get("rel", 0) for b in blocks], bars=True)
        for k in kinds
    ]
    return {PANEL.title: bars}


LENS = Lens(
    name="weights",
    kind=ACTION,
    run=run,
    action=action,
    rows={"dW_rel": "‖ΔW‖/‖W‖"},
    panels=(PANEL,),
    schema=("*.layers.*.*.?rel:num",),
    draw=draw,
)
