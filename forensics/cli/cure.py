"""`forensics cure`: erase where the information map points, beside the cures that ignore it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from forensics.cli.args import (
    FORCE,
    _executor,
    _positive_float,
    _positive_int,
    _runtime,
    _runtime_args,
    _split_list,
)
from forensics.cli.finish import format_table


def cmd_cure(a: argparse.Namespace) -> None:
    from forensics.study.cure import CONTROLS, CureSettings, cure_world
    from reports.cure import cure_rows

    start = time.perf_counter()
    settings = CureSettings(
        method=a.method,
        k=a.k,
        alpha=a.alpha,
        draws=a.draws,
        steps=a.steps,
        seed=a.seed,
        controls=a.controls or CONTROLS,
    )
    out = Path(a.out) if a.out else Path(a.world) / "cure"
    results = cure_world(
        Path(a.world),
        out,
        settings,
        a.grid,
        a.lenses or None,
        _runtime(a),
        _executor(a),
        a.kind,
        not a.quiet,
        a.force,
    )
    cure = results["cure"]
    rows = cure_rows(cure)  # the report's and summary.md's rows
    print(format_table(rows, list(rows[0])))
    print(cure["words"])
    print(f"report: {out / 'study' / 'report' / 'index.html'}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def add(subparsers) -> None:
    cu = subparsers.add_parser(
        "cure", help="erase where the information map points, beside cures that ignore it (UNDO's noise)"
    )
    cu.add_argument("--world", required=True, help="a world directory (forensics world, demo or real)")
    cu.add_argument("--out", help="where the cures and their studies go (default WORLD/cure)")
    cu.add_argument("--method", default="gd", help="the unlearning method whose model is cured (default gd)")
    cu.add_argument("--k", type=_positive_int, help="blocks per cure (default: a quarter of the model's)")
    cu.add_argument("--alpha", type=_positive_float, default=0.5, help="UNDO's noise share, in (0, 1]")
    cu.add_argument("--draws", type=_positive_int, default=3, help="cures of random blocks (default 3)")
    cu.add_argument("--steps", type=_positive_int, help="distillation cap per cure (global UNDO: 4×)")
    cu.add_argument(
        "--controls",
        type=_split_list,
        default=(),
        help="the cures that ignore the map, among lowest,random,global (default all; a rerun with more "
        "reuses what ran)",
    )
    cu.add_argument("--kind", help="in a two-kind world: this kind's facts and control")
    cu.add_argument("--grid", default="demo", help="demo, or real (a pretrained model's world)")
    cu.add_argument(
        "--lenses", type=_split_list, default=(), help="the cures' study's lenses (default: the grid's)"
    )
    cu.add_argument("--seed", type=int, default=0)
    cu.add_argument("--quiet", action="store_true", help="no progress bars")
    cu.add_argument("--force", **FORCE)
    _runtime_args(cu, grid=True)
    cu.set_defaults(func=cmd_cure)
