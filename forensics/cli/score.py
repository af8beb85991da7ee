"""`forensics score`: multiple-choice accuracy of a checkpoint, per split."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import (
    FACTS_HELP,
    _partition_args,
    _positive_int,
    _runtime,
    _runtime_args,
    _split_list,
)
from forensics.cli.finish import format_table
from forensics.errors import InputError


def cmd_score(a: argparse.Namespace) -> None:
    from forensics.facts.core import check_choices, repeats_a_choice
    from forensics.facts.formats import default_format
    from forensics.facts.load import load_facts
    from forensics.models.checkpoint import load_checkpoint
    from forensics.models.hub import resolve_model
    from forensics.models.pair import check_context
    from forensics.models.scoring import SCORERS, score

    if a.scorer not in SCORERS:
        raise InputError(f"--scorer {a.scorer}: choose {', '.join(SCORERS)}")

    facts = load_facts(Path(a.facts), a.partition, a.facts_seed)
    names = list(a.splits) or facts.names()
    for name in names:
        if name not in facts.splits:
            raise InputError(f"{a.facts}: split '{name}' not found (have: {', '.join(facts.names())})")
    splits = {name: list(facts.splits[name]) for name in names}
    if a.drop_duplicates:  # questions whose choices repeat cannot be scored: left out and counted
        splits = {name: [f for f in fs if not repeats_a_choice(f)] for name, fs in splits.items()}
    else:
        check_choices(facts.facts(names), "leave such questions out (--drop-duplicates)")
    for name, fs in splits.items():
        if not fs:
            raise InputError(f"{a.facts}: split '{name}' is empty after dropping repeated choices")
    kept = [f for fs in splits.values() for f in fs]
    checkpoint = resolve_model(a.checkpoint)
    model, tok = load_checkpoint(checkpoint, _runtime(a))
    check_context(checkpoint, kept, a.scorer, default_format(a.scorer), tok)
    rows = []
    for name, fs in splits.items():
        s = score(model, tok, fs, a.scorer, a.batch_size)
        rows.append({"split": name, "facts": len(s.correct), "accuracy": s.accuracy, "chance": s.chance})
    print(f"{a.checkpoint} ({a.scorer} scorer):")
    print(format_table(rows, ["split", "facts", "accuracy", "chance"]))
    dropped = len(facts.facts(names)) - len(kept)
    if dropped:
        print(f"left out {dropped} questions whose choices repeat (--drop-duplicates)")


def add(subparsers) -> None:
    s = subparsers.add_parser("score", help="multiple-choice accuracy of a checkpoint, per split")
    s.add_argument("checkpoint", help="an HF causal-LM directory (safetensors)")
    s.add_argument("--facts", required=True, help=FACTS_HELP)
    _partition_args(s)
    s.add_argument("--splits", type=_split_list, default=(), help="comma-separated (default: all)")
    s.add_argument("--scorer", default="choice", help="choice, letter or letter_calibrated")
    s.add_argument("--batch-size", type=_positive_int, default=64)
    s.add_argument("--drop-duplicates", action="store_true", help="leave out questions whose choices repeat")
    _runtime_args(s)
    s.set_defaults(func=cmd_score)
