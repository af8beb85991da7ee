"""`forensics demo`: the whole job on the embedded world, offline."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from forensics.cli.args import FORCE, _executor, _runtime, _runtime_args, _split_list
from forensics.cli.finish import finish_kinds, finish_study, world_table
from forensics.outdir import claim

DEFAULT_DEMO_DIR = "runs/demo"
# the demo runs its independent jobs (the world's two models, the methods, RTT runs, per-model
# lenses) in worker processes side by side, one per core up to four
DEMO_WORKERS = max(1, min(4, os.cpu_count() or 1))


def cmd_demo(a: argparse.Namespace) -> None:
    from forensics.study.pipeline import unlearn_and_study
    from forensics.unlearn import METHODS
    from forensics.unlearn.run import UnlearnSettings, check_method
    from forensics.worlds.world import WorldConfig, build_world

    start = time.perf_counter()
    out = Path(a.out)
    runtime, executor = _runtime(a), _executor(a)
    names = a.methods or tuple(METHODS)
    for name in names:
        check_method(name)
    with claim(out, "demo", a.force):
        world = build_world(
            out, WorldConfig(kinds=a.kinds), progress=not a.quiet, runtime=runtime, executor=executor
        )
        print(f"embedded world in {out} (checkpoints: {', '.join(world['models'])}):")
        print(world_table(world))
        settings = UnlearnSettings(scorer=world["scorer"], light=True)
        results, by_kind, ks = unlearn_and_study(
            out, world, names, settings, "demo", "demo", runtime, executor, not a.quiet
        )
        if ks is not None:
            finish_kinds(results, by_kind, ks, start)
        else:
            finish_study(results, out, start)


def add(subparsers) -> None:
    d = subparsers.add_parser("demo", help="the whole job on the embedded world, offline")
    d.add_argument("--out", default=DEFAULT_DEMO_DIR)
    d.add_argument(
        "--kinds",
        type=_split_list,
        default=(),
        help="pretrained,implanted: the two-kind world, each kind unlearned and studied, then compared",
    )
    d.add_argument("--methods", type=_split_list, default=(), help="comma-separated (default: all)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.add_argument("--force", **FORCE)
    _runtime_args(d, grid=True, workers=DEMO_WORKERS)
    d.set_defaults(func=cmd_demo)
