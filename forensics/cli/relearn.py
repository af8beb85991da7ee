"""`forensics relearn`: the relearning attack (RTT) on a world's checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import (
    FORCE,
    _executor,
    _float_list,
    _int_list,
    _positive_float,
    _positive_int,
    _runtime,
    _runtime_args,
    _split_list,
    _world_models,
)
from forensics.cli.finish import format_table
from forensics.errors import InputError
from forensics.outdir import claim


def lora_flags(a: argparse.Namespace) -> dict:
    """The --lora-* settings given, refused without --method lora (they would be silently ignored)."""
    given = {
        k: getattr(a, k) for k in ("lora_rank", "lora_alpha", "lora_targets") if getattr(a, k) is not None
    }
    if given and a.method != "lora":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InputError(f"{flags}: only with --method lora (the method is {a.method})")
    return given


def cmd_relearn(a: argparse.Namespace) -> None:
    from forensics.attacks.adequacy import rounds_words, words
    from forensics.attacks.relearn import RelearnSettings, check, relearn
    from forensics.worlds.world import load_world

    lora = lora_flags(a)
    with claim(Path(a.world), "relearn", a.force, create=False, outputs=["relearn.json"]):
        world, sets = load_world(Path(a.world))
        settings = RelearnSettings(
            lrs=a.lrs,
            epochs=a.epochs,
            batch_size=a.batch_size,
            scorer=world["scorer"],
            loss_format=a.format,
            seeds=a.seeds,
            method=a.method,
            extend_rounds=a.extend_rounds,
            **lora,
        )
        vs = check(sets, settings, a.v)
        models = _world_models(Path(a.world), a.models)
        result = relearn(models, sets, Path(a.world), settings, vs, not a.quiet, _runtime(a), _executor(a))
        rows = []
        for name, m in result["metrics"].items():
            row = {"model": name}
            for key in ("acc_v", "recovery", "recovery_above_chance", "hidden"):
                if key in m:
                    row[key] = f"{m[key]['mean']:.2f} ± {m[key]['std']:.2f}"
            row["attack"] = words(result["adequacy"][name])
            rows.append(row)
        print(
            f"RTT ({settings.fmt} loss, lrs {list(settings.lrs)}, {settings.epochs} epochs, V over {vs}; "
            f"chance {result['chance']:.2f}); best (lr, epoch) per V chosen on V, the attacker's best case:"
        )
        print(format_table(rows, ["model", "acc_v", "recovery", "recovery_above_chance", "hidden", "attack"]))
        print(f"rounds: {rounds_words(result['rounds'])}")
        print(f"written: {Path(a.world) / 'relearn.json'}")


def add(subparsers) -> None:
    from forensics.attacks.relearn import RelearnSettings

    rtt = RelearnSettings()
    r = subparsers.add_parser("relearn", help="the relearning attack (RTT) on every checkpoint of a world")
    r.add_argument("--world", required=True, help="a world directory (from `forensics world`)")
    r.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    r.add_argument("--lrs", type=_float_list, default=rtt.lrs, help="comma-separated")
    r.add_argument("--epochs", type=int, default=rtt.epochs)
    r.add_argument(
        "--extend-rounds",
        type=int,
        default=rtt.extend_rounds,
        help="rounds the grid may grow by (lr ×3, epochs ×2) while some model's attack is not adequate",
    )
    r.add_argument("--format", help="loss format: qla, letter, qa or corpus (default: the scorer's)")
    r.add_argument("--v", type=_split_list, default=(), help="only these V splits (default: every one)")
    r.add_argument("--batch-size", type=_positive_int, default=rtt.batch_size)
    r.add_argument("--seeds", type=_int_list, default=rtt.seeds, help="comma-separated RTT seeds")
    r.add_argument("--method", default=rtt.method, help="full fine-tuning or lora (adapters, peft)")
    r.add_argument("--lora-rank", type=_positive_int, help=f"with --method lora (default {rtt.lora_rank})")
    r.add_argument(
        "--lora-alpha", type=_positive_float, help=f"with --method lora (default {rtt.lora_alpha:g})"
    )
    r.add_argument(
        "--lora-targets",
        type=_split_list,
        help="with --method lora: module names (default: every linear layer)",
    )
    r.add_argument("--force", **FORCE)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(r, grid=True)
    r.set_defaults(func=cmd_relearn)
