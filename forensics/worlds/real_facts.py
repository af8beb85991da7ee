"""Which of the paper's facts a real-model world uses (docs/design.md §11): the `years` facts the base
knows, the control facts it does not, and the implanted birthdays, each dealt into its splits."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from forensics.errors import InputError
from forensics.facts.core import Fact, select
from forensics.facts.load import load_facts
from forensics.models.checkpoint import load_checkpoint
from forensics.worlds.known import knowledge
from forensics.worlds.real_config import RealConfig

CONTROL_RULE = "unknown to the base; wrong under the cloze on the implanted original"  # in the world's key


def distinct(folder: Path) -> list[Fact]:
    """Every fact of a paper folder's splits (dev left out), questions asked twice and questions whose
    choices repeat left out (the leak checks of `select`)."""
    facts = load_facts(folder)
    names = [n for n in facts.names() if n != "dev"]
    sets = select(facts, names[:-1], names[-1:], drop_duplicates=True)
    return [*sets.forget_facts(), *sets.retain]


def _deal(facts: list[Fact], names: list[str], sizes: list[int]) -> list[Fact]:
    """The first facts dealt into splits of the given sizes, each renamed to its split."""
    out, start = [], 0
    for name, size in zip(names, sizes, strict=True):
        out += [replace(f, split=name) for f in facts[start : start + size]]
        start += size
    return out


def pretrained_facts(
    base: Path, cfg: RealConfig, data: Path, progress: bool, pool: Sequence[Fact] | None = None
) -> tuple[list[Fact], list[Fact], dict]:
    """`years` facts the base knows, dealt into forget splits + retain, and the facts it does not
    know (the control's candidates, `control_facts`), in a seeded order; every fact is scanned (the
    rule's counts describe the whole data); with the rule's counts.
    `pool`: the distinct `years` facts, when already read."""
    pool = list(pool) if pool is not None else distinct(data / "years")
    random.Random(cfg.seed).shuffle(pool)
    model, tok = load_checkpoint(base)
    need_known = cfg.forget_splits * (cfg.per_split or 1) + cfg.retain
    need_unknown = cfg.forget_splits * (cfg.per_split or 1)
    known, unknown, counts, scanned = [], [], {}, 0
    while scanned < len(pool):
        chunk = pool[scanned : scanned + cfg.scan]
        found = knowledge(model, tok, chunk)
        known += [f for f, k in zip(chunk, found["known"], strict=True) if k]
        unknown += [f for f, u in zip(chunk, found["unknown"], strict=True) if u]
        for name, value in found["counts"].items():
            counts[name] = counts.get(name, 0) + value
        scanned += len(chunk)
    if len(known) < need_known or len(unknown) < need_unknown:
        raise InputError(
            f"{data / 'years'}: the model knows {len(known)} facts and does not know {len(unknown)} by the "
            f"rule; {need_known} and {need_unknown} are needed (fewer per split: --per-split, --retain)"
        )
    splits = [f"pretrained_{i}" for i in range(cfg.forget_splits)]
    size = cfg.per_split or min(len(known) - cfg.retain, len(unknown)) // cfg.forget_splits
    per = [size] * cfg.forget_splits
    chance = 0.25
    rate = counts["question_right"] / counts["facts"]
    knows = max(0.0, (rate - chance) / (1 - chance))
    facts = _deal(known, [*splits, "pretrained_retain"], [*per, cfg.retain])
    summary = {
        "rule": (
            "known: right under the multiple-choice question and under a cloze of its own corpus "
            "statement (the year replaced by each choice); unknown: wrong under both"
        ),
        "scanned": counts,
        "question_accuracy": round(rate, 3),
        "expected_lucky_known": round((1 - knows) * counts["facts"] * chance**2, 1),
        "expected_lucky_one_format": round((1 - knows) * counts["facts"] * chance, 1),
        "used": {"forget": sum(per), "retain": cfg.retain},
    }
    return facts, unknown, summary


def control_facts(
    original, tok, unknown: list[Fact], size: int, cfg: RealConfig, data: Path
) -> tuple[list[Fact], dict]:
    """The control splits: facts the base did not know (wrong under both formats) that the study's
    original, after the implant, still gets wrong under the cloze. Chosen on the cloze only, so the
    reference check (the original's accuracy on them under the question, which the study scores) can
    fail: had they been chosen wrong under the question too, that check would read 0 by construction,
    and facts chosen for being wrong drift back up under any change to the model (on SmolLM2, 96 chosen
    on the base were answered 0.38 [0.28, 0.47] by the implanted original)."""
    found = knowledge(original, tok, unknown)
    kept = [i for i, c in enumerate(found["cloze"]) if c is False]
    still = [unknown[i] for i in kept]
    per = size if cfg.per_split else min(size, len(still) // cfg.forget_splits)
    if per < 1 or len(still) < per * cfg.forget_splits:
        raise InputError(
            f"{data / 'years'}: of the {len(unknown)} facts the base does not know, the implanted "
            f"original gets {len(still)} wrong under the cloze; {per * cfg.forget_splits} are needed for "
            "the control (fewer per split: --per-split)"
        )
    controls = [f"pretrained_control_{i}" for i in range(cfg.forget_splits)]
    used = kept[: per * cfg.forget_splits]  # `_deal` deals the first facts
    rule = {
        "rule": f"{CONTROL_RULE} (its question accuracy on them is the reference check)",
        "candidates": len(unknown),
        "wrong_under_cloze_on_original": len(still),
        "used": len(used),
        # the reference check's figure, from the same forward pass
        "question_accuracy_on_original": float(np.mean([found["question"][i] for i in used])),
    }
    return _deal(still, controls, [per] * cfg.forget_splits), rule


def implanted_facts(cfg: RealConfig, data: Path) -> list[Fact]:
    """`random-birthdays` facts (none the model can know: fictional people) in forget splits and a
    near-retain split, in a seeded order."""
    pool = [f for f in distinct(data / "random-birthdays") if f.statements]
    random.Random(cfg.seed + 1).shuffle(pool)
    splits = [f"implanted_{i}" for i in range(cfg.forget_splits)]
    size = cfg.per_split or (len(pool) - cfg.near) // cfg.forget_splits
    if size < 1 or size * cfg.forget_splits + cfg.near > len(pool):
        raise InputError(
            f"{data / 'random-birthdays'}: {len(pool)} facts with corpus statements; "
            f"{cfg.forget_splits} splits of {max(size, 1)} and {cfg.near} near-retain are needed "
            "(fewer per split: --per-split, --near)"
        )
    return _deal(pool, [*splits, "implanted_near"], [size] * cfg.forget_splits + [cfg.near])
