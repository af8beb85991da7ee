"""`forensics world`: build the embedded world."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

from forensics.cli.args import FORCE, _positive_float, _runtime, _runtime_args, _split_list
from forensics.cli.finish import world_table
from forensics.errors import InputError


def _world_args(p: argparse.ArgumentParser) -> None:
    from forensics.worlds.world import WorldConfig

    d = WorldConfig()
    g = p.add_argument_group("generated facts")
    g.add_argument(
        "--people", dest="n_people", type=int, default=d.n_people, help="family A facts (people, birth years)"
    )
    g.add_argument(
        "--ships", dest="n_ships", type=int, default=d.n_ships, help="family B facts (ships, launch years)"
    )
    g.add_argument(
        "--forget-facts", dest="n_forget", type=int, default=d.n_forget, help="facts of A to forget"
    )
    g.add_argument(
        "--forget-splits",
        dest="n_forget_splits",
        type=int,
        default=d.n_forget_splits,
        help="forget splits (RTT)",
    )
    g = p.add_argument_group("two kinds of knowledge: pretrained people beside implanted cities")
    g.add_argument(
        "--kinds",
        type=_split_list,
        default=d.kinds,
        help="pretrained,implanted: a base model pretrained on A and B, then C implanted by fine-tuning",
    )
    # None when not given: they mean something only with --kinds (refused without it)
    g.add_argument("--cities", dest="n_cities", type=int, help=f"family C facts (default {d.n_cities})")
    g.add_argument(
        "--implanted-forget", dest="n_implanted_forget", type=int, help=f"default {d.n_implanted_forget}"
    )
    g.add_argument(
        "--filler", type=int, help=f"filler sentences around each pretraining statement (default {d.filler})"
    )
    g.add_argument("--implant-epochs", type=int, help=f"default {d.implant_epochs}")
    g.add_argument("--implant-lr", type=_positive_float, help=f"default {d.implant_lr:g}")
    g = p.add_argument_group("facts from the paper's layout instead")
    g.add_argument("--facts-dir", help="a folder in the Deeb & Roger layout (split_N.jsonl, ...)")
    g.add_argument("--forget", type=_split_list, default=(), help="comma-separated forget splits")
    g.add_argument("--retain", type=_split_list, default=(), help="comma-separated retain splits")
    g.add_argument("--near-retain", type=_split_list, default=(), help="comma-separated splits")
    g.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="leave out questions asked in more than one place instead of refusing them",
    )
    g = p.add_argument_group("models")
    g.add_argument("--scorer", default=d.scorer, help="choice, letter or letter_calibrated")
    g.add_argument(
        "--model-type",
        default=d.model_type,
        help="the models' HF family: llama, gpt2, gpt_neox, qwen2, gemma, …",
    )
    g.add_argument("--layers", type=int, default=d.layers)
    g.add_argument("--d-model", type=int, default=d.d_model)
    g.add_argument("--heads", type=int, default=d.heads)
    g.add_argument("--vocab-size", type=int, default=d.vocab_size)
    g.add_argument("--epochs", type=int, default=d.epochs, help="at most; stops once all are learned")
    g.add_argument("--lr", type=_positive_float, default=d.lr)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--seed", type=int, default=d.seed)


KIND_FLAGS = {
    "n_cities": "--cities",
    "n_implanted_forget": "--implanted-forget",
    "filler": "--filler",
    "implant_epochs": "--implant-epochs",
    "implant_lr": "--implant-lr",
}


def _world_config(a: argparse.Namespace):
    """The WorldConfig the parsed arguments describe (argument names are its field names)."""
    from forensics.worlds.world import WorldConfig

    values = {f.name: getattr(a, f.name) for f in fields(WorldConfig) if getattr(a, f.name, None) is not None}
    kinds_only = [k for k in KIND_FLAGS if k in values]
    if kinds_only and not values.get("kinds"):
        raise InputError(f"{KIND_FLAGS[kinds_only[0]]} needs --kinds pretrained,implanted")
    if values.get("facts_dir"):
        values["facts_dir"] = str(Path(values["facts_dir"]).resolve())
    return WorldConfig(**values)


def cmd_world(a: argparse.Namespace) -> None:
    from forensics.worlds.world import build_world

    start = time.perf_counter()
    world = build_world(Path(a.out), _world_config(a), not a.quiet, a.force, _runtime(a))
    print(f"world ({world['scorer']} scorer) in {a.out}:")
    print(world_table(world))
    dropped = world.get("dropped_duplicates", [])
    if dropped:
        print(f"left out {len(dropped)} repeated questions (--drop-duplicates)")
    print(f"done in {time.perf_counter() - start:.1f} s")


def add(subparsers) -> None:
    w = subparsers.add_parser("world", help="build the embedded world: facts, tokenizer, two models")
    w.add_argument("--out", required=True, help="directory to write the world to")
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.add_argument("--force", **FORCE)
    _world_args(w)
    _runtime_args(w)
    w.set_defaults(func=cmd_world)
