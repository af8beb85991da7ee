"""Which facts a pretrained model knows (docs/design.md §11): a rule that keeps lucky guesses out.

Picking the facts a model answers right also picks guesses: if it knows a fraction κ of the facts and
guesses the rest among k choices, its accuracy is κ + (1 − κ)/k, and (1 − κ)/k of the facts are right
by luck (at 0.5 on 4 choices: κ = 1/3, and a third of the right answers). A fact counts as *known*
when the model is right in
two formats that share no prompt: the multiple-choice question (the `choice` scorer) and a *cloze*
of one of the fact's own corpus statements, the statement's year replaced by each choice in turn.
A fact wrong in both is *unknown* (the control of pretrained facts: what RTT teaches by itself).
A fact right in one format only is neither, and left out.

If a model that does not know a fact guesses each format independently at 1/k, it passes both by
luck with probability 1/k²: the report gives the expected number of such guesses among the known.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from forensics.facts.core import Fact
from forensics.models.scoring import continuation_logliks, score


def cloze(fact: Fact) -> tuple[str, list[str]] | None:
    """(the text before the answer, each choice + the rest) from the fact's corpus statement that
    states the answer once with the longest text before it (the context that names the event); None
    when no statement states it with text before it."""
    answer = fact.choices[fact.answer]
    best = None
    for text in fact.statements:
        found = list(re.finditer(rf"(?<![\w]){re.escape(answer)}(?![\w])", text))
        if len(found) != 1 or not text[: found[0].start()].strip():
            continue
        start, end = found[0].span()
        if best is None or start > best[0]:
            best = (start, text[:start].rstrip(), text[end:])
    if best is None:
        return None
    _, head, tail = best
    return head, [f" {c}{tail}" for c in fact.choices]


def knowledge(model, tokenizer, facts: Sequence[Fact], batch_size: int = 32) -> dict:
    """Per fact: right under the question and under the cloze (None without a usable statement),
    and whether it is known (right in both) or unknown (wrong in both); with the counts and the
    expected number of lucky guesses among the known."""
    question = score(model, tokenizer, facts, "choice", batch_size).correct
    usable = [i for i, f in enumerate(facts) if cloze(f) is not None]
    items = [cloze(facts[i]) for i in usable]
    on_cloze = np.full(len(facts), None, dtype=object)
    if items:
        lls = continuation_logliks(model, tokenizer, items, batch_size)
        for i, row in zip(usable, lls, strict=True):
            on_cloze[i] = bool(np.argmax(row[: len(facts[i].choices)]) == facts[i].answer)
    known = [bool(q and c) for q, c in zip(question, on_cloze, strict=True)]
    unknown = [bool(c is not None and not q and not c) for q, c in zip(question, on_cloze, strict=True)]
    chance = float(np.mean([1 / len(f.choices) for f in facts]))
    n = len(facts)
    accuracy = float(question.mean())
    # facts the model does not know, by the question's accuracy: a = k + (1 − k)·chance
    knows = max(0.0, (accuracy - chance) / (1 - chance))
    return {
        "question": [bool(x) for x in question],
        "cloze": list(on_cloze),
        "known": known,
        "unknown": unknown,
        "counts": {
            "facts": n,
            "usable": len(usable),
            "question_right": int(question.sum()),
            "cloze_right": int(sum(1 for c in on_cloze if c)),
            "known": sum(known),
            "unknown": sum(unknown),
        },
        "question_accuracy": accuracy,
        "expected_lucky_known": round((1 - knows) * n * chance**2, 1),
        "expected_lucky_one_format": round((1 - knows) * n * chance, 1),
        "rule": (
            "known: right under the multiple-choice question and under a cloze of its own corpus "
            "statement; unknown: wrong under both; right under one only: left out"
        ),
    }
