"""`forensics diff`: the streaming per-layer weight diff of two checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.finish import format_table


def diff_table(result: dict) -> str:
    """‖ΔW‖/‖W‖ per layer (rows) and module kind (columns)."""
    layers = result["layers"]
    kinds = sorted({k for per in layers.values() for k in per})
    rows = [{"layer": layer, **{k: per[k]["rel"] for k in per}} for layer, per in layers.items()]
    return format_table(rows, ["layer", *kinds])


def cmd_diff(a: argparse.Namespace) -> None:
    from forensics.measure.weights import diff
    from forensics.models.checkpoint import write_json
    from forensics.models.hub import resolve_model

    result = diff(resolve_model(a.original), resolve_model(a.unlearned))
    print(f"relative weight change ‖ΔW‖/‖W‖ of {a.unlearned} against {a.original}:")
    print(diff_table(result))
    if a.out:
        write_json(result, Path(a.out))
        print(f"written: {a.out}")


def add(subparsers) -> None:
    df = subparsers.add_parser("diff", help="streaming per-layer weight diff of two checkpoints")
    df.add_argument("original", help="an HF checkpoint directory (safetensors)")
    df.add_argument("unlearned", help="a checkpoint of the same architecture")
    df.add_argument("--out", help="write the full diff (every tensor) to this JSON file")
    df.set_defaults(func=cmd_diff)
