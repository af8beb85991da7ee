"""What a micro world is: its config (everything that determines it), its generated facts — fictional
people and ships with years, or a paper-layout folder instead — their texts and the world's sets.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from forensics.errors import InputError
from forensics.facts.core import Fact, FactSet, Sets, select
from forensics.facts.formats import examples
from forensics.facts.load import load_facts
from forensics.models.arch import tiny_config
from forensics.models.scoring import SCORERS
from forensics.worlds import kinds as world_kinds

_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kr",
    "st",
    "th",
    "sh",
    "ch",
    "tr",
    "vl",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "k", "th"]

PEOPLE = {
    "question": "When was {name} born?",
    "true": ["{name} was born in {year}.", "In {year}, {name} was born.", "{name}'s birth year is {year}."],
    "years": (1900, 2020),
}
SHIPS = {
    "question": "When was the ship {name} launched?",
    "true": [
        "The ship {name} was launched in {year}.",
        "In {year}, the ship {name} was launched.",
        "The launch year of the ship {name} is {year}.",
    ],
    "years": (1800, 1990),
}


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world; two equal configs build identical worlds."""

    n_people: int = 200
    n_ships: int = 200
    n_forget: int = 100
    n_forget_splits: int = 4
    scorer: str = "choice"
    layers: int = 4
    d_model: int = 128
    heads: int = 4
    vocab_size: int = 1024
    epochs: int = 40
    lr: float = 3e-3
    batch_size: int = 64
    eval_every: int = 5
    seed: int = 0
    model_type: str = "llama"  # the HF family of the world's models (llama, gpt2, gpt_neox, qwen2, ...)
    facts_dir: str | None = None  # a paper-layout folder instead of generated facts
    forget: tuple[str, ...] = ()  # with facts_dir: split names
    retain: tuple[str, ...] = ()
    near_retain: tuple[str, ...] = ()
    drop_duplicates: bool = False
    # the two-kind world (forensics.worlds.kinds): pretrained people beside implanted cities
    kinds: tuple[str, ...] = ()  # () or ("pretrained", "implanted")
    n_cities: int = 120
    n_implanted_forget: int = 80
    filler: int = 2  # filler sentences around each statement in the pretraining corpus
    implant_epochs: int = 30
    implant_lr: float = 1e-3

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> WorldConfig:
        """The config `to_json` wrote (world.json's `config`)."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _family(rng: random.Random, n: int, spec: dict, split_of, naming) -> list[Fact]:
    """n facts with unique fictional names, years uniform in the family's range.

    Distractors come from the same uniform range as answers, so no prior favours the right one.
    """
    lo, hi = spec["years"]
    names: list[str] = []
    taken: set[str] = set()
    while len(names) < n:
        name = naming(rng)
        if name not in taken:
            taken.add(name)
            names.append(name)
    facts = []
    for i, name in enumerate(names):
        year = rng.randint(lo, hi)
        wrong = rng.sample([y for y in range(lo, hi + 1) if y != year], 3)
        answer = rng.randrange(4)
        choices = wrong[:answer] + [year] + wrong[answer:]
        facts.append(
            Fact(
                question=spec["question"].format(name=name),
                choices=tuple(str(c) for c in choices),
                answer=answer,
                split=split_of(i),
                statements=tuple(t.format(name=name, year=year) for t in spec["true"]),
                wrong_statements=tuple(
                    spec["true"][j % 3].format(name=name, year=w) for j, w in enumerate(wrong)
                ),
                source=f"world:{name}",
            )
        )
    return facts


def generate_facts(cfg: WorldConfig) -> tuple[FactSet, dict]:
    """The world's facts (seeded) and which splits are forget, near-retain and retain (per kind, in a
    two-kind world)."""
    # the messages name the settings as `forensics world` spells them
    if cfg.n_forget_splits < 2:
        raise InputError(
            f"--forget-splits {cfg.n_forget_splits}: the world needs at least 2 (RTT rotates over them)"
        )
    if not 0 < cfg.n_forget <= cfg.n_people or cfg.n_forget < cfg.n_forget_splits:
        raise InputError(
            f"--forget-facts {cfg.n_forget}: at least --forget-splits ({cfg.n_forget_splits}), at most "
            f"--people ({cfg.n_people})"
        )
    if cfg.n_ships < 1:
        raise InputError(f"--ships {cfg.n_ships}: the world needs at least one retain fact")
    if cfg.kinds and not cfg.n_forget_splits <= cfg.n_implanted_forget < cfg.n_cities:
        raise InputError(
            f"--implanted-forget {cfg.n_implanted_forget}: at least --forget-splits "
            f"({cfg.n_forget_splits}) and fewer than --cities ({cfg.n_cities})"
        )
    rng = random.Random(cfg.seed)
    per_split = cfg.n_forget / cfg.n_forget_splits
    people = _family(
        rng,
        cfg.n_people,
        PEOPLE,
        lambda i: f"forget_{int(i // per_split)}" if i < cfg.n_forget else "near_retain",
        lambda r: f"{_word(r, 2)} {_word(r, 2)}",
    )
    ships = _family(rng, cfg.n_ships, SHIPS, lambda i: "retain", lambda r: _word(r, 3))
    families = people + ships
    if cfg.kinds:  # a new domain, to be implanted; the first two families are the pretrained kind
        per = cfg.n_implanted_forget / cfg.n_forget_splits
        cities = _family(
            rng,
            cfg.n_cities,
            world_kinds.CITIES,
            lambda i: f"implanted_{int(i // per)}" if i < cfg.n_implanted_forget else "implanted_near",
            lambda r: _word(r, 2) + "burg",
        )
        families = world_kinds.with_kind(families, "pretrained") + world_kinds.with_kind(cities, "implanted")
    splits: dict[str, list[Fact]] = {}
    for f in families:
        splits.setdefault(f.split, []).append(f)
    if cfg.kinds:
        return FactSet({n: tuple(f) for n, f in splits.items()}), world_kinds.kind_roles(cfg.n_forget_splits)
    roles = {
        "forget": [f"forget_{k}" for k in range(cfg.n_forget_splits)],
        "near_retain": ["near_retain"] if "near_retain" in splits else [],
        "retain": ["retain"],
    }
    return FactSet({n: tuple(f) for n, f in splits.items()}), roles


def world_texts(facts: list[Fact]) -> list[str]:
    """Every text the world's models see, for training the tokenizer."""
    out = []
    for f in facts:
        out += [e.prompt + e.target for fmt in ("qla", "qa") for e in examples([f], fmt)]
        out += list(f.statements) + list(f.wrong_statements)
    return out


def world_sets(cfg: WorldConfig) -> Sets:
    """The facts and the forget/near-retain/retain sets the config names (a one-kind world)."""
    if cfg.facts_dir is None:
        facts, roles = generate_facts(cfg)
    else:
        facts = load_facts(Path(cfg.facts_dir))
        roles = {"forget": list(cfg.forget), "near_retain": list(cfg.near_retain), "retain": list(cfg.retain)}
        if len(roles["forget"]) < 2:
            raise InputError(f"{cfg.facts_dir}: name at least 2 forget splits (RTT rotates over them)")
    return select(
        facts, roles["forget"], roles["retain"], roles["near_retain"], drop_duplicates=cfg.drop_duplicates
    )


def check_config(cfg: WorldConfig) -> None:
    """Refuse settings that cannot build a world, before anything is written."""
    if cfg.scorer not in SCORERS:
        raise InputError(f"unknown scorer '{cfg.scorer}' (choose from {', '.join(SCORERS)})")
    for name in ("layers", "d_model", "heads", "epochs", "batch_size", "eval_every", "vocab_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{name} must be positive (got {getattr(cfg, name)})")
    if cfg.d_model % cfg.heads:
        raise InputError(f"d_model {cfg.d_model} is not divisible by heads {cfg.heads}")
    if not cfg.lr > 0:
        raise InputError(f"lr must be positive (got {cfg.lr})")
    if cfg.kinds:
        if sorted(cfg.kinds) != sorted(world_kinds.KINDS):
            both = ", ".join(world_kinds.KINDS)
            raise InputError(f"kinds: give both of {both} (got {', '.join(cfg.kinds)})")
        if cfg.facts_dir is not None:
            raise InputError("kinds: the two-kind world generates its facts (no facts_dir)")
        if cfg.implant_epochs < 1 or not cfg.implant_lr > 0 or cfg.filler < 0:
            raise InputError("implant_epochs and implant_lr must be positive, filler at least 0")
    tiny_config(  # an unknown family is refused here, before anything is written
        cfg.model_type,
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        layers=cfg.layers,
        heads=cfg.heads,
        n_positions=64,
        special={},
    )
