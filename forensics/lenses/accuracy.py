"""Accuracy of every checkpoint on forget (per fact), near-retain, retain and the control facts: what
every other lens is read beside."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.lenses.base import MEASURE, Context, Lens


def run(ctx: Context) -> dict:
    from forensics.models.checkpoint import load_checkpoint
    from forensics.models.scoring import accuracy_table

    tables = {}
    for name, path in ctx.models.items():
        model, tok = load_checkpoint(path, ctx.runtime)
        tables[name] = accuracy_table(model, tok, ctx.sets, ctx.scorer, per_fact=True)
    return tables


@dataclass(frozen=True)
class Accuracy:
    """One model's accuracy as the summary reads it."""

    forget: float
    retain: float
    near_retain: float | None
    forget_correct: str | None  # per forget fact, 0/1 (None: written before it was kept)
    control_correct: str | None  # per control fact, 0/1 (a fact-controlled study)


def view(results: dict) -> dict[str, Accuracy]:
    """Every model's accuracy in a study's results ({} when the lens did not run)."""
    return {
        name: Accuracy(
            t["forget"], t["retain"], t.get("near_retain"), t.get("forget_correct"), t.get("control_correct")
        )
        for name, t in results.get("accuracy", {}).items()
    }


def cells(results: dict, model: str) -> dict:
    t = results.get("accuracy", {}).get(model)  # not the whole view: once per method
    return (
        {}
        if t is None
        else {"forget": t["forget"], "retain": t["retain"], "near_retain": t.get("near_retain")}
    )


LENS = Lens(
    name="accuracy",
    kind=MEASURE,
    run=run,
    cells=cells,
    columns={"forget": "forget", "near-retain": "near_retain", "retain": "retain"},
)
