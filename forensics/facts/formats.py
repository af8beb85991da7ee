"""How a fact becomes text: the scorers' prompts and the training loss formats, in one place.

Scoring and training share these so that a model is scored on exactly the text it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forensics.errors import InputError
from forensics.facts.core import LETTERS, Fact

LOSS_FORMATS = ("qla", "letter", "qa", "corpus")
"""question+letter+answer, letter only, question+answer, plain corpus statements (docs/design.md §1)."""


@dataclass(frozen=True)
class Example:
    """A training text: the loss is taken on `target` only, `prompt` is context."""

    prompt: str
    target: str


def letter_prompt(fact: Fact) -> str:
    """The `letter` scorer's prompt: the question, lettered choices, then `Answer:`."""
    lines = [fact.question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(fact.choices)]
    return "\n".join(lines) + "\nAnswer:"


def letter_target(index: int) -> str:
    return f" {LETTERS[index]}"


def choice_context(fact: Fact) -> str:
    """The `choice` scorer's context: each choice is scored as a continuation of it."""
    return f"{fact.question}\nAnswer:"


def choice_continuation(choice: str) -> str:
    return f" {choice}"


def default_format(scorer: str) -> str:
    """The loss format that matches a scorer (question+letter+answer for letter, else q+answer)."""
    return "qla" if scorer.startswith("letter") else "qa"


def examples(facts: Sequence[Fact], fmt: str) -> list[Example]:
    """Training examples for `facts` in loss format `fmt` (one of LOSS_FORMATS)."""
    if fmt not in LOSS_FORMATS:
        raise InputError(f"unknown loss format '{fmt}' (choose from {', '.join(LOSS_FORMATS)})")
    out: list[Example] = []
    for f in facts:
        if fmt == "qla":
            out.append(Example(letter_prompt(f), f"{letter_target(f.answer)}. {f.answer_text}"))
        elif fmt == "letter":
            out.append(Example(letter_prompt(f), letter_target(f.answer)))
        elif fmt == "qa":
            out.append(Example(choice_context(f), choice_continuation(f.answer_text)))
        else:
            if not f.statements:
                raise InputError(f"{f.source}: no corpus statements for the 'corpus' format")
            out += [Example("", s) for s in f.statements]
    return out


def wrong_examples(facts: Sequence[Fact], fmt: str) -> list[Example]:
    """Texts that state a wrong answer (for RIA): each distractor in `fmt`, plus wrong statements."""
    out: list[Example] = []
    for f in facts:
        for i, choice in enumerate(f.choices):
            if i == f.answer:
                continue
            if fmt in ("qla", "letter"):
                tail = f". {choice}" if fmt == "qla" else ""
                out.append(Example(letter_prompt(f), letter_target(i) + tail))
            else:
                out.append(Example(choice_context(f), choice_continuation(choice)))
        out += [Example("", s) for s in f.wrong_statements]
    return out
