"""`forensics localize`: weights, activations and causal localization per layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import (
    FORCE,
    _executor,
    _float_list,
    _int_list,
    _runtime,
    _runtime_args,
    _split_list,
    _world_models,
)
from forensics.cli.finish import format_table
from forensics.errors import InputError
from forensics.outdir import claim

SECTIONS = ("weights", "activations", "localize")  # each written to WORLD/<section>.json


def cmd_localize(a: argparse.Namespace) -> None:
    from forensics.attacks.relearn import RelearnSettings
    from forensics.lenses.localize import localized_layers
    from forensics.measure.localize import activations_section, localize_section, weights_section
    from forensics.models.checkpoint import write_json
    from forensics.worlds.world import load_world

    root = Path(a.world)
    with claim(Path(a.world), "localize", a.force, create=False, outputs=[f"{k}.json" for k in SECTIONS]):
        world, sets = load_world(root)
        models = _world_models(root, a.models)
        unlearned = {n: p for n, p in models.items() if n not in ("original", "never_learned")}
        if not unlearned:
            raise InputError(
                f"{root / 'checkpoints'}: no unlearned checkpoints (run `forensics unlearn` first)"
            )
        settings = RelearnSettings(lrs=a.lrs, epochs=a.epochs, scorer=world["scorer"], seeds=a.seeds)
        original = models["original"]
        out = {
            "weights": weights_section(original, unlearned),
            "activations": activations_section(
                original, unlearned, sets, world["scorer"], root / "cache", _runtime(a)
            ),
            "localize": localize_section(
                original, unlearned, sets, settings, not a.quiet, _runtime(a), _executor(a)
            ),
        }
        for key in SECTIONS:
            write_json(out[key], root / f"{key}.json")
        for name, loc in out["localize"].items():
            rows = []
            for i, layer in enumerate(localized_layers(loc)):
                rows.append(
                    {
                        "layer": layer,
                        "ΔW rel": out["weights"][name]["layers"][str(layer)]["all"]["rel"],
                        "cos forget": out["activations"][name]["forget"]["cosine"][layer + 1],
                        "cos retain": out["activations"][name]["retain"]["cosine"][layer + 1],
                        "revert": loc["revert"][i]["forget"],
                        "patch": loc["patch"][i]["forget"],
                        "layer RTT V": loc["layer_rtt"][i]["acc_v"],
                        "RTT cos(Δ, −ΔW)": loc["dynamics"]["points"][-1]["cosine"][layer],
                    }
                )
            print(f"{name}: forget {loc['before']['forget']:.2f}, retain {loc['before']['retain']:.2f}")
            print(format_table(rows, list(rows[0])))
        print(
            f"written: {', '.join(str(root / f'{k}.json') for k in ('weights', 'activations', 'localize'))}"
        )


def add(subparsers) -> None:
    from forensics.study.grids import preset

    loc = preset("full").of("localize")
    lo = subparsers.add_parser("localize", help="weights, activations and causal localization per layer")
    lo.add_argument("--world", required=True, help="a world directory with unlearned checkpoints")
    lo.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    lo.add_argument("--lrs", type=_float_list, default=loc.lrs, help="layer-restricted RTT learning rates")
    lo.add_argument("--epochs", type=int, default=loc.epochs, help="layer-restricted RTT epochs")
    lo.add_argument("--seeds", type=_int_list, default=loc.seeds, help="comma-separated seeds")
    lo.add_argument("--force", **FORCE)
    lo.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(lo, grid=True)
    lo.set_defaults(func=cmd_localize)
