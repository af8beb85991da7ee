"""Checkpoints checked as a pair with the original before any stage runs, and prompts against context.

An unlearned checkpoint (or the control) must be the original's architecture with the same tensor
names and shapes and the same tokenizer (vocabulary, merges, special tokens): otherwise every
comparison the lenses make is meaningless. Every sequence the study will run must fit the model's
context. Each problem is a one-line `InputError` naming both directories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from forensics.errors import InputError
from forensics.facts.core import Fact, Sets
from forensics.facts.formats import (
    choice_context,
    choice_continuation,
    examples,
    letter_prompt,
    letter_target,
)
from forensics.models.checkpoint import load_tokenizer, read_json, tensor_headers

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape by name."""
    return {name: shape for _, name, shape in tensor_headers(path)}


def tokenizer_identity(path: Path) -> dict:
    """What decides how text becomes ids: vocabulary, merges, normalisation, special tokens."""
    tok = load_tokenizer(path)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:
        spec = {"vocab": tok.get_vocab()}
    spec["special"] = {k: getattr(tok, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")}
    return spec


def check_pair(original: Path, other: Path, name: str, reference: dict) -> None:
    """Refuse `other` unless it has the original's architecture, tensors, shapes and tokenizer;
    `reference` holds the original's `tensor_shapes` and `tokenizer_identity`, read once."""
    a, b = read_json(Path(original) / "config.json"), read_json(Path(other) / "config.json")
    for k in ("model_type", "architectures", "vocab_size"):
        if a.get(k) != b.get(k):
            raise InputError(
                f"{other}: model '{name}' is {k} {b.get(k)}, the original ({original}) is {a.get(k)}"
            )
    mine, theirs = reference["shapes"], tensor_shapes(other)
    for t in sorted(set(mine) | set(theirs)):
        if t not in theirs:
            raise InputError(f"{other}: model '{name}' lacks tensor '{t}' that the original ({original}) has")
        if t not in mine:
            raise InputError(f"{other}: model '{name}' has tensor '{t}' that the original ({original}) lacks")
        if mine[t] != theirs[t]:
            raise InputError(
                f"{other}: model '{name}' tensor '{t}' has shape {theirs[t]}, the original's is {mine[t]}"
            )
    if reference["tokenizer"] != tokenizer_identity(other):
        raise InputError(
            f"{other}: model '{name}' has a different tokenizer from the original ({original}): "
            "ids would not mean the same text"
        )


def context_length(path: Path) -> int | None:
    """The longest sequence a checkpoint's config allows (None when the config does not say)."""
    config = read_json(Path(path) / "config.json")
    values = [config[k] for k in CONTEXT_KEYS if isinstance(config.get(k), int)]
    return min(values) if values else None


def sequences(facts: Sequence[Fact], scorer: str, fmt: str) -> list[tuple[str, str, str]]:
    """(prompt, target, source) of every text the scorer and the training formats will run."""
    out = []
    for f in facts:
        if scorer.startswith("letter"):
            out.append((letter_prompt(f), letter_target(len(f.choices) - 1), f.source))
        else:
            out += [(choice_context(f), choice_continuation(c), f.source) for c in f.choices]
        if fmt != "corpus" or f.statements:
            out += [(e.prompt, e.target, f.source) for e in examples([f], fmt)]
        out += [("", s, f.source) for s in (*f.statements, *f.wrong_statements)]
    return out


def check_context(path: Path, facts: Sequence[Fact], scorer: str, fmt: str, tok=None) -> None:
    """Refuse facts whose longest text is longer than the checkpoint's context, naming the fact."""
    limit = context_length(path)
    if limit is None:
        return
    from forensics.models.tokens import encode

    tok = tok or load_tokenizer(path)
    for prompt, target, source in sequences(facts, scorer, fmt):
        n = len(encode(tok, prompt, target)[0])
        if n > limit:
            raise InputError(
                f"{source}: a text of this fact is {n} tokens, longer than the model's context of "
                f"{limit} ({Path(path) / 'config.json'})"
            )


def check_models(models: Mapping[str, Path], sets: Sets, scorer: str, fmt: str) -> None:
    """The study's checks before any stage: every model against the first (the original), and
    every fact's texts against the context."""
    names = list(models)
    original = models[names[0]]
    reference = {"shapes": tensor_shapes(original), "tokenizer": tokenizer_identity(original)}
    for name in names[1:]:
        check_pair(original, models[name], name, reference)
    check_context(
        original, [*sets.forget_facts(), *sets.near_retain, *sets.retain, *sets.control_facts()], scorer, fmt
    )
