"""`forensics attack`: quantization and direction-ablation attacks on a world's checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import FORCE, _int_list, _runtime, _runtime_args, _split_list, _world_models
from forensics.cli.finish import format_table
from forensics.outdir import claim


def cmd_attack(a: argparse.Namespace) -> None:
    from forensics.attacks.ablate import ablate_attack, forget_residuals
    from forensics.attacks.quantize import quantize_attack
    from forensics.models.checkpoint import boot_bridge, write_json
    from forensics.worlds.world import load_world

    root = Path(a.world)
    with claim(Path(a.world), "attack", a.force, create=False, outputs=["attacks.json"]):
        world, sets = load_world(root)
        models = _world_models(root, a.models)
        run = _runtime(a)
        quantized = quantize_attack(models, sets, world["scorer"], a.bits, runtime=run)
        unlearned = [n for n in models if n not in ("original", "never_learned")]
        original = forget_residuals(boot_bridge(models["original"], runtime=run), sets, world["scorer"])
        ablated = {
            n: ablate_attack(boot_bridge(models[n], runtime=run), original, sets, world["scorer"])
            for n in unlearned
        }
        write_json({"quantize": quantized, "ablate": ablated}, root / "attacks.json")
        rows = []
        for name, q in quantized["models"].items():
            row = {"model": name, "forget": q["full"]["forget"], "retain": q["full"]["retain"]}
            for b in a.bits:
                row[f"forget int{b}"] = q[f"int{b}"]["forget"]
                row[f"retain int{b}"] = q[f"int{b}"]["retain"]
            if name in ablated:
                best = ablated[name]["best_layer"]
                row["V before ablation"] = ablated[name]["mean_before"]
                row["V ablated (best layer)"] = f"{ablated[name]['mean_after'][best]:.2f} (layer {best})"
            rows.append(row)
        print(f"quantization (RTN per output channel) and direction ablation ({world['scorer']} scorer):")
        print(format_table(rows, list(rows[-1])))
        print(f"written: {root / 'attacks.json'}")


def add(subparsers) -> None:
    from forensics.attacks.quantize import QuantizeSettings

    t = subparsers.add_parser(
        "attack", help="quantization and direction-ablation attacks on a world's checkpoints"
    )
    t.add_argument("--world", required=True, help="a world directory (from `forensics world`)")
    t.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    t.add_argument("--bits", type=_int_list, default=QuantizeSettings().bits)
    t.add_argument("--force", **FORCE)
    _runtime_args(t)
    t.set_defaults(func=cmd_attack)
