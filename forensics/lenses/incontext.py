"""In-context relearning: the T facts with their answers as demonstrations in the prompt, then a V
question — relearning without touching the weights, what anyone with API access can do.

Per V split (each forget split in turn, as RTT rotates) and seed (the demonstrations' order and
which of T are shown), every V fact is scored after the same demonstrations; the control facts
beside V are scored after them too. As many demonstrations as `shots`, fewer where the longest
prompt would not fit the model's context (the section says how many).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from forensics.config import check_seeds
from forensics.errors import InputError
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, everything
from forensics.outcomes import Reading, bits, unbits

LABEL = "in-context"


@dataclass(frozen=True)
class InContextSettings:
    shots: int = 8  # demonstrations before each question (fewer when the context is short)
    seeds: tuple[int, ...] = (0, 1, 2)  # orders (and picks) of the demonstrations

    def __post_init__(self):
        if self.shots < 1:
            raise InputError(f"'shots' must be at least 1 (got {self.shots})")
        check_seeds(self.seeds)


def demonstrations(t_facts, scorer: str, shots: int, seed: int) -> str:
    """`shots` of the T facts, in the seed's order, each written as the scorer's training text (the
    question and its answer), separated by blank lines."""
    from forensics.facts.formats import default_format, examples

    order = np.random.default_rng(seed).permutation(len(t_facts))[:shots]
    texts = examples([t_facts[i] for i in order], default_format(scorer))
    return "".join(f"{e.prompt}{e.target}\n\n" for e in texts)


def primed(facts, demos: str) -> list:
    """`facts` asked after `demos` (the question is the start of every scorer's prompt)."""
    return [replace(f, question=demos + f.question) for f in facts]


def _fits(tok, limit: int, prompts: list) -> bool:
    longest = max(len(tok(f.question + " " + max(f.choices, key=len))["input_ids"]) for f in prompts)
    return longest + 8 <= limit  # room for the scorer's own words ("Answer:", letters)


def fitting_shots(tok, limit: int, sets, scorer: str, settings: InContextSettings) -> int:
    """The most demonstrations (≤ `shots`, and ≤ the largest T: there are no more to show) with
    which every primed prompt fits `limit` tokens. A prompt only grows with more demonstrations (each
    seed's are a prefix of one order), so the count is found by bisection."""
    rotations = list(sets.rotations())

    def fits(shots: int) -> bool:
        return all(
            _fits(tok, limit, primed(v_facts, demonstrations(t, scorer, shots, seed)))
            for _, t, v_facts in rotations
            for seed in settings.seeds
        )

    low, high = 0, min(settings.shots, max(len(t) for _, t, _ in rotations))  # fits(low) holds
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def run(ctx: Context) -> dict:
    from forensics.models.checkpoint import load_checkpoint
    from forensics.models.scoring import score

    settings: InContextSettings = ctx.settings("incontext")
    out: dict = {"seeds": list(settings.seeds), "models": {}}
    for name, path in ctx.models.items():
        model, tok = load_checkpoint(path, ctx.runtime)
        if "shots" not in out:
            limit = getattr(model.config, "max_position_embeddings", None) or 10**9
            out["shots"] = fitting_shots(tok, limit, ctx.sets, ctx.scorer, settings)
        if not out["shots"]:
            return {**out, "models": {}, "note": "no demonstration fits the model's context"}
        rows, control_rows = [], []
        for seed in settings.seeds:
            forget, control = [], []
            for v, t, v_facts in ctx.sets.rotations():
                demos = demonstrations(t, ctx.scorer, out["shots"], seed)
                forget.append(score(model, tok, primed(v_facts, demos), ctx.scorer).correct)
                if ctx.sets.control:
                    control.append(
                        score(model, tok, primed(ctx.sets.control_of(v), demos), ctx.scorer).correct
                    )
            rows.append(bits(np.concatenate(forget)))
            if control:
                control_rows.append(bits(np.concatenate(control)))
        entry = {"correct": rows, "acc": float(np.mean([unbits(r).mean() for r in rows]))}
        if control_rows:
            entry["control_correct"] = control_rows
        out["models"][name] = entry
    return out


def outcomes(results: dict, model: str) -> Outcomes:
    entry = results.get("incontext", {}).get("models", {}).get(model)
    if not entry:
        return {}
    return {Reading(LABEL): (np.stack([unbits(r) for r in entry["correct"]]), everything(results))}


def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
    entry = results.get("incontext", {}).get("models", {}).get(model, {})
    if "control_correct" not in entry:
        return {}
    return {Reading(LABEL): np.stack([unbits(r) for r in entry["control_correct"]])}


LENS = Lens(
    name="incontext",
    kind=INFORMATION,
    run=run,
    settings=InContextSettings,
    shares={"seeds": "seeds"},  # the study's seeds order (and pick) the demonstrations
    outcomes=outcomes,
    control_outcomes=control_outcomes,
)
