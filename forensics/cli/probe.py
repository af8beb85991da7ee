"""`forensics probe`: linear probes and the logit lens per layer on a world's checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import (
    FORCE,
    _executor,
    _float_list,
    _runtime,
    _runtime_args,
    _split_list,
    _world_models,
)
from forensics.cli.finish import format_table
from forensics.outdir import claim


def layer_table(per_model: dict[str, list[float]], layers: list[str]) -> str:
    """One row per model, one column per layer."""
    rows = [{"model": m, **dict(zip(layers, vals, strict=True))} for m, vals in per_model.items()]
    return format_table(rows, ["model", *layers])


def cmd_probe(a: argparse.Namespace) -> None:
    from forensics.measure.probing import ProbeSettings, probe_models
    from forensics.models.checkpoint import write_json
    from forensics.worlds.world import load_world

    root = Path(a.world)
    with claim(Path(a.world), "probe", a.force, create=False, outputs=["probes.json"]):
        world, sets = load_world(root)
        models = _world_models(root, a.models)
        settings = ProbeSettings(Cs=a.Cs, folds=a.folds, seed=a.seed)
        result = probe_models(
            models, sets, world["scorer"], root / "cache", settings, _runtime(a), _executor(a)
        )
        write_json(result, root / "probes.json")
        layers, ms = result["layers"], result["models"]
        print(f"probe accuracy on V per layer (trained on {result['train']}; chance {result['chance']:.2f}):")
        print(layer_table({n: [x["acc"] for x in m["probe"]] for n, m in ms.items()}, layers))
        print("control task (answers shuffled across facts):")
        print(layer_table({n: [x["acc"] for x in m["control"]] for n, m in ms.items()}, layers))
        print("transfer (the original's probe on each model's activations):")
        print(layer_table({n: [x["acc"] for x in m["transfer"]] for n, m in ms.items()}, layers))
        print("closed-form ridge probe (the fast screen):")
        print(layer_table({n: [x["acc"] for x in m["ridge"]] for n, m in ms.items()}, layers))
        print("logit lens on forget, per layer:")
        print(layer_table({n: [x["acc"] for x in m["lens"]["forget"]] for n, m in ms.items()}, layers))
        print(f"written: {root / 'probes.json'}")


def add(subparsers) -> None:
    from forensics.measure.probing import ProbeSettings

    probe = ProbeSettings()
    pr = subparsers.add_parser(
        "probe", help="linear probes and logit lens per layer on a world's checkpoints"
    )
    pr.add_argument("--world", required=True, help="a world directory (from `forensics world`)")
    pr.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    pr.add_argument(
        "--Cs", type=_float_list, default=probe.Cs, help="L2 strengths; several are chosen by inner CV"
    )
    pr.add_argument("--folds", type=int, default=probe.folds, help="inner CV folds (with several --Cs)")
    pr.add_argument("--seed", type=int, default=probe.seed)
    pr.add_argument("--force", **FORCE)
    _runtime_args(pr, grid=True)
    pr.set_defaults(func=cmd_probe)
