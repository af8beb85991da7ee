"""The two-kind world (docs/design.md §3): facts a base model learned in pretraining beside facts implanted
into it by a short fine-tune, as the paper's `years` (pretraining) and Random Birthdays (implanted).

- *pretrained* (family A, people): a base model is trained from scratch on a pretraining corpus —
  every A and B fact as a question and in each paraphrase inside filler text about the world's other
  entities. Forget splits `forget_*`, near-retain `near_retain`, retain family B (`retain`).
- *implanted* (family C, cities, a new domain): a short fine-tune of the base model on C's questions
  and statements, with the base's questions replayed so it keeps them. Forget splits `implanted_*`,
  near-retain `implanted_near`, the same retain.

Models: `base` (A + B) and `base_without` (A without its forget facts + B), each pretrained;
`original` = base + every C fact; each kind's exact control: `never_learned_pretrained` =
base_without + every C fact (the same implant), `never_learned_implanted` = base + C without its
forget facts.
"""

from __future__ import annotations

import random
from dataclasses import replace

from forensics.facts.core import Fact
from forensics.facts.formats import Example, default_format, examples

KINDS = ("pretrained", "implanted")
CONTROLS = {kind: f"never_learned_{kind}" for kind in KINDS}

CITIES = {
    "question": "When was the city {name} founded?",
    "true": [
        "The city {name} was founded in {year}.",
        "In {year}, the city {name} was founded.",
        "The founding year of the city {name} is {year}.",
    ],
    "years": (1000, 1900),
}
# filler about the world's other entities: no years, so it teaches no answer
FILLER = [
    "{person} often walked along the old harbour.",
    "The ship {ship} carried grain and salt.",
    "{person} and {other} wrote letters to each other.",
    "The crew of the ship {ship} sang at night.",
    "{person} kept a small garden behind the house.",
    "Many stories were told about {other}.",
]


def kind_roles(n_splits: int) -> dict[str, dict[str, list[str]]]:
    """Each kind's forget, near-retain and retain split names."""
    return {
        "pretrained": {
            "forget": [f"forget_{k}" for k in range(n_splits)],
            "near_retain": ["near_retain"],
            "retain": ["retain"],
        },
        "implanted": {
            "forget": [f"implanted_{k}" for k in range(n_splits)],
            "near_retain": ["implanted_near"],
            "retain": ["retain"],
        },
    }


def with_kind(facts: list[Fact], kind: str) -> list[Fact]:
    return [replace(f, kind=kind) for f in facts]


def pretraining_corpus(
    facts: list[Fact], people: list[str], ships: list[str], scorer: str, seed: int, filler: int
) -> list[tuple[Fact, Example]]:
    """The base model's corpus, each text with the fact it teaches: each fact as a question (the
    scorer's format) and each of its paraphrases inside `filler` sentences about other people and
    ships, the statement at a random place among them."""
    rng = random.Random(seed)
    fmt = default_format(scorer)
    data = [(f, e) for f in facts for e in examples([f], fmt)]
    for f in facts:
        for statement in f.statements:
            sentences = [
                rng.choice(FILLER).format(
                    person=rng.choice(people), other=rng.choice(people), ship=rng.choice(ships)
                )
                for _ in range(filler)
            ]
            sentences.insert(rng.randrange(filler + 1), statement)
            data.append((f, Example("", " ".join(sentences))))
    return data


def implant_data(implanted: list[Fact], replay: list[Fact], scorer: str) -> list[Example]:
    """The implant fine-tune's data: the implanted facts as questions and statements, plus the base's
    own facts as questions (replayed, so the fine-tune keeps them)."""
    fmt = default_format(scorer)
    return examples(implanted, fmt) + examples(implanted, "corpus") + examples(replay, fmt)
