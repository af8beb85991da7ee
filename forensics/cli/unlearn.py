"""`forensics unlearn`: unlearn the forget set with a method, sweeping its settings."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from forensics.cli.args import (
    FACTS_HELP,
    FORCE,
    _executor,
    _float,
    _float_list,
    _partition_args,
    _positive_int,
    _runtime,
    _runtime_args,
    _split_list,
)
from forensics.cli.finish import format_table
from forensics.errors import InputError
from forensics.outdir import claim, safe_name


def _unlearn_sets(a: argparse.Namespace):
    """(original, sets, output root, scorer) from --world, or --original/--facts/--forget/--retain."""
    from forensics.facts.core import select
    from forensics.facts.load import load_facts
    from forensics.models.hub import resolve_model
    from forensics.worlds.world import load_world

    if a.world:
        world, sets = load_world(Path(a.world), a.kind)
        return Path(a.world) / world["models"]["original"]["path"], sets, Path(a.world), world["scorer"]
    if not (a.original and a.facts and a.forget and a.retain and a.out):
        raise InputError("give --world DIR, or --original, --facts, --forget, --retain and --out")
    facts = load_facts(Path(a.facts), a.partition, a.facts_seed)
    sets = select(facts, a.forget, a.retain, a.near_retain, a.drop_duplicates)
    return resolve_model(a.original), sets, Path(a.out), a.scorer


def cmd_unlearn(a: argparse.Namespace) -> None:
    from forensics.unlearn import METHODS
    from forensics.unlearn.run import UnlearnSettings, check_method, unlearn

    names = list(METHODS) if a.method == "all" else [a.method]
    for name in names:
        check_method(name)
    original, sets, root, scorer = _unlearn_sets(a)
    settings = UnlearnSettings(
        scorer=scorer,
        batch_size=a.batch_size,
        seed=a.seed,
        min_retain=a.min_retain,
        steps=a.steps,
        fixed={} if a.rmu_layer is None else {"layer": a.rmu_layer},
        lrs=a.lr,
        forget_margin=a.forget_margin,
        budget=a.budget,
    )
    rows = []
    with claim(root, "unlearn", a.force):
        for name in names:
            start = time.perf_counter()
            path = root / "checkpoints" / safe_name(f"{name}_{a.kind}" if a.kind else name)
            meta = unlearn(
                name, original, sets, path, settings, not a.quiet, a.force, _runtime(a), _executor(a)
            )
            chosen = meta["chosen"]
            rows.append(
                {
                    "method": name,
                    **chosen["accuracy"],
                    "rule_met": chosen["met"],
                    "chosen": ", ".join(f"{k}={v:g}" for k, v in chosen["params"].items()),
                    "runs": meta["cost"]["runs"],
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
    print(f"unlearned from {original} ({scorer} scorer); checkpoints in {root / 'checkpoints'}:")
    print(
        format_table(rows, ["method", *meta["chosen"]["accuracy"], "rule_met", "chosen", "runs", "seconds"])
    )
    print(f"rule: {meta['rule']['text']}; a method that did not meet it is marked unlearning_failed")


def add(subparsers) -> None:
    from forensics.unlearn.run import UnlearnSettings

    unl = UnlearnSettings()
    u = subparsers.add_parser(
        "unlearn", help="unlearn the forget set with a method (or all), sweeping its settings"
    )
    u.add_argument("--method", required=True, help="ga, gd, ria, rmu, npo or all")
    u.add_argument("--world", help="a world directory (from `forensics world`)")
    u.add_argument(
        "--kind", help="in a two-kind world: unlearn this kind's forget set (checkpoints/<method>_<kind>)"
    )
    u.add_argument("--original", help="instead of --world: the original checkpoint")
    u.add_argument("--facts", help=f"with --original: {FACTS_HELP}")
    _partition_args(u)
    u.add_argument("--forget", type=_split_list, default=(), help="comma-separated forget splits")
    u.add_argument("--retain", type=_split_list, default=(), help="comma-separated retain splits")
    u.add_argument("--near-retain", type=_split_list, default=(), help="comma-separated splits")
    u.add_argument("--drop-duplicates", action="store_true", help="leave out repeated questions")
    u.add_argument("--out", help="with --original: checkpoints go to OUT/checkpoints/<method>")
    u.add_argument("--scorer", default="choice", help="with --original: choice, letter or letter_calibrated")
    u.add_argument(
        "--min-retain", type=_float, default=unl.min_retain, help="retain floor, × the original's accuracy"
    )
    u.add_argument("--lr", type=_float_list, help="comma-separated learning rates (replace the grid's)")
    u.add_argument(
        "--forget-margin",
        type=_float,
        default=unl.forget_margin,
        help="the rule: forget accuracy at most chance + this",
    )
    u.add_argument(
        "--budget",
        type=int,
        default=unl.budget,
        help="runs per method at most, the first round included (a smaller one runs the grid's first points)",
    )
    u.add_argument("--steps", type=int, help="optimizer steps per run (default: each method's own)")
    u.add_argument("--rmu-layer", type=int, help="RMU's layer ℓ (default: the middle layer)")
    u.add_argument("--batch-size", type=_positive_int, default=unl.batch_size)
    u.add_argument("--seed", type=int, default=unl.seed)
    u.add_argument("--force", **FORCE)
    u.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(u, grid=True)
    u.set_defaults(func=cmd_unlearn)
