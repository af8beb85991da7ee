"""Other formats: the forget facts asked in formats the methods did not unlearn on — lettered
multiple choice beside the choice scorer (or the reverse), and a cloze of each fact's own corpus
statement (the answer's place filled by each choice in turn) where the data ships statements.
Forgetting that holds in one format only is hiding.
"""

from __future__ import annotations

import numpy as np

from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes
from forensics.outcomes import Reading, bits, unbits

CLOZE = "cloze"


def other_formats(scorer: str, facts=None) -> tuple[str, ...]:
    """The scorers the study does not use, and the cloze — unless `facts` are given and none of them
    has a corpus statement it can be asked from (then no format of that name is run or listed)."""
    from forensics.worlds.known import cloze

    other = "choice" if scorer.startswith("letter") else "letter"
    if facts is not None and not any(cloze(f) is not None for f in facts):
        return (other,)
    return (other, CLOZE)


def correct(model, tok, facts, fmt: str) -> tuple[np.ndarray, list[int]]:
    """(right or wrong, per fact) in format `fmt`, and which of `facts` the format can ask."""
    from forensics.models.scoring import continuation_logliks, score
    from forensics.worlds.known import cloze

    if fmt != CLOZE:
        return score(model, tok, facts, fmt).correct, list(range(len(facts)))
    items = {i: c for i, f in enumerate(facts) if (c := cloze(f)) is not None}
    usable = list(items)
    if not usable:
        return np.zeros(0, dtype=bool), []
    lls = continuation_logliks(model, tok, list(items.values()))
    right = [
        np.argmax(row[: len(facts[i].choices)]) == facts[i].answer for i, row in zip(usable, lls, strict=True)
    ]
    return np.array(right, dtype=bool), usable


def run(ctx: Context) -> dict:
    from forensics.models.checkpoint import load_checkpoint

    forget, control = ctx.sets.forget_facts(), ctx.sets.control_facts()
    formats = other_formats(ctx.scorer, forget)
    out: dict = {"formats": list(formats), "models": {}}
    for name, path in ctx.models.items():
        model, tok = load_checkpoint(path, ctx.runtime)
        entry = {}
        for fmt in formats:
            right, facts = correct(model, tok, forget, fmt)
            if not facts:
                continue
            entry[fmt] = {"correct": bits(right), "facts": facts, "acc": float(right.mean())}
            if control:
                right, facts = correct(model, tok, control, fmt)
                entry[fmt].update(control_correct=bits(right), control_facts=facts)
        out["models"][name] = entry
    return out


def outcomes(results: dict, model: str) -> Outcomes:
    entry = results.get("formats", {}).get("models", {}).get(model, {})
    return {Reading(f"format {fmt}"): (unbits(e["correct"])[None], e["facts"]) for fmt, e in entry.items()}


def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
    """Outcomes on the control facts, where the format could ask every one of them."""
    entry = results.get("formats", {}).get("models", {}).get(model, {})
    n = len(results["facts"].get("control_splits", []))
    return {
        Reading(f"format {fmt}"): unbits(e["control_correct"])[None]
        for fmt, e in entry.items()
        if "control_correct" in e and len(e["control_facts"]) == n
    }


LENS = Lens(
    name="formats",
    kind=INFORMATION,
    run=run,
    outcomes=outcomes,
    control_outcomes=control_outcomes,
)
