"""Accuracy of every checkpoint on forget (per fact), near-retain, retain and the control facts: what
every other lens is read beside."""

from __future__ import annotations

from forensics.lenses.base import MEASURE, Context, Lens


def run(ctx: Context) -> dict:
    from forensics.models.checkpoint import load_checkpoint
    from forensics.models.scoring import accuracy_table

    tables = {}
    for name, path in ctx.models.items():
        model, tok = load_checkpoint(path, ctx.runtime)
        tables[name] = accuracy_table(model, tok, ctx.sets, ctx.scorer, per_fact=True)
    return tables


LENS = Lens(name="accuracy", kind=MEASURE, run=run)
