"""Activation divergence: 1 − cosine between each block's residual in the method and in the original,
on forget and retain prompts."""

from __future__ import annotations

from forensics.lenses.base import ACTION, Context, Lens, Panel, Series


def run(ctx: Context) -> dict:
    from forensics.measure.localize import activations_section

    return activations_section(ctx.cfg.original, ctx.others, ctx.sets, ctx.scorer, ctx.cache, ctx.runtime)


def action(results: dict, model: str) -> dict | None:
    acts = results.get("activations", {}).get(model)
    if not acts:
        return None
    divergence = [1 - c for c in acts["forget"]["cosine"][1:]]
    return {"layers": [str(i) for i in range(len(divergence))], "divergence": divergence}


PANEL = Panel(title="cosine to the original's residuals")


def draw(results: dict, model: str) -> dict[str, list[Series]]:
    """Per layer (the embedding first), the cosine of the method's residual to the original's."""
    acts = results.get("activations", {}).get(model)
    if not acts:
        return {}
    layers = ["embed", *map(str, range(len(acts["forget"]["cosine"]) - 1))]
    return {
        PANEL.title: [
            Series(name="forget prompts", x=layers, y=acts["forget"]["cosine"], color="#805ad5"),
            Series(name="retain prompts", x=layers, y=acts["retain"]["cosine"], color="#38a169"),
        ]
    }


LENS = Lens(
    name="activations",
    kind=ACTION,
    run=run,
    action=action,
    rows={"divergence": "1 − cos to the original"},
    panels=(PANEL,),
    draw=draw,
    schema=tuple(f"*.{k}.cosine.[]:num?" for k in ("forget", "retain")),
)
