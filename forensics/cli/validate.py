"""`forensics validate`: verdicts on models whose answer is known by construction."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import _executor, _runtime, _runtime_args, _split_list
from forensics.cli.finish import format_table
from forensics.errors import InputError


def cmd_validate(a: argparse.Namespace) -> None:
    from forensics.study.validate import LENSES, validate

    world = Path(a.world)
    if a.seeds < 1:
        raise InputError(f"--seeds must be at least 1 (got {a.seeds})")
    out = Path(a.out) if a.out else world / "validate"
    lenses = a.lenses or LENSES
    result = validate(world, out, a.seeds, not a.quiet, _runtime(a), _executor(a), a.kind, a.grid, lenses)
    rows = [
        {
            "world": r["world"],
            "model": r["model"],
            "expected": r["expected"],
            "verdict": r["verdict"],
            "deciding lens": r["deciding"] or "",
            "below its block": (
                {True: "above control", False: "not above control"}.get(
                    r.get("above_control_below_block"), ""
                )
                + (
                    f" ({r['layers_judged_below_block']} layers read)"
                    if "layers_judged_below_block" in r
                    else ""
                )
            ),
            "action map": {True: "at its block", False: "not at its block"}.get(r.get("action_at_block"), ""),
        }
        for r in result["rows"]
    ]
    print(format_table(rows, list(rows[0])))
    verdicts = sorted({v for cell in result["confusion"].values() for v in cell})
    table = [
        {"expected": e, **{v: cell.get(v, 0) for v in verdicts}} for e, cell in result["confusion"].items()
    ]
    print("confusion (expected × verdict):")
    print(format_table(table, ["expected", *verdicts]))
    print(f"done in {result['seconds']:.1f} s")


def add(subparsers) -> None:
    va = subparsers.add_parser("validate", help="verdicts on models whose answer is known by construction")
    va.add_argument("--world", required=True, help="a world directory (from `forensics world` or the demo)")
    va.add_argument("--out", help="where the validation models and studies go (default WORLD/validate)")
    va.add_argument("--seeds", type=int, default=1, help="world seeds: the given world and N-1 more")
    va.add_argument("--kind", help="in a two-kind world: validate on this kind's facts and control")
    va.add_argument(
        "--grid", default="demo", help="demo, or real (a pretrained model's world: forensics real)"
    )
    va.add_argument(
        "--lenses",
        type=_split_list,
        default=(),
        help="comma-separated information lenses (default: accuracy,relearn,quantize,probes,ablate,"
        "incontext,formats,tuned); accuracy always runs",
    )
    va.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(va, grid=True)
    va.set_defaults(func=cmd_validate)
