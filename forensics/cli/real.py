"""`forensics real`: the whole job on a real pretrained model and the paper's data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from forensics.cli.args import (
    FORCE,
    _executor,
    _per_split,
    _positive_float,
    _positive_int,
    _runtime,
    _runtime_args,
    _split_list,
)
from forensics.cli.finish import finish_kinds, world_table
from forensics.errors import InputError
from forensics.outdir import claim
from forensics.worlds.real_config import REAL_UNLEARN, RealConfig

# what the verdict rests on (accuracy, RTT), the information map (probes and the logit lens, every layer,
# one pass per model) and the lenses that read weights only (seconds); every other lens scores each model
# again on every fact and is asked for by name (README: their measured costs). At 2 splits of 68 and 2 RTT
# seeds the pretrained kind's study took 59 min on 2 CPU cores, 57 of them RTT (README: the real model)
REAL_LENSES = ("accuracy", "relearn", "probes", "weights", "geometry")
# the looks' budget: a cap above the default run on 2 CPU cores (about 3 h, README: the real model), so a row
# left inconclusive by the first pass gets its second rotation; a slower machine gets fewer looks
REAL_HOURS = 4.0


def cmd_real(a: argparse.Namespace) -> None:
    from forensics.lenses import check_lenses
    from forensics.study.grids import GRIDS
    from forensics.study.pipeline import unlearn_and_study
    from forensics.unlearn.run import UnlearnSettings, check_method
    from forensics.worlds.real import build_real_world, read_paper_data

    start = time.perf_counter()
    out = Path(a.out)
    runtime, executor = _runtime(a), _executor(a)
    for name in a.methods:
        check_method(name)
    if a.grid not in GRIDS:
        raise InputError(f"--grid {a.grid}: choose {', '.join(GRIDS)}")
    lenses = REAL_LENSES if a.lenses is None else a.lenses  # `--lenses ,` is an empty list, refused
    check_lenses(lenses, "--lenses")
    if a.rotations is not None and a.rotations > a.forget_splits:
        raise InputError(f"--rotations {a.rotations}: more than the {a.forget_splits} forget splits")
    cfg = RealConfig(
        model=a.model,
        data=a.data,
        forget_splits=a.forget_splits,
        per_split=a.per_split,
        retain=a.retain,
        near=a.near,
        implant_lr=a.implant_lr,
        implant_epochs=a.implant_epochs,
        seed=a.seed,
    )
    paper = read_paper_data(cfg)  # every data file parsed before the model is read or loaded
    with claim(out, "real", a.force):
        world = build_real_world(out, cfg, progress=not a.quiet, runtime=runtime, paper=paper)
        print(f"real-model world in {out} (checkpoints: {', '.join(world['models'])}):")
        print(world_table({**world, "models": {k: v for k, v in world["models"].items() if "accuracy" in v}}))
        rule = world["known_facts"]
        control = rule["control"]
        print(
            f"known years facts: {rule['scanned']['known']} of {rule['scanned']['facts']} scanned "
            f"(expected lucky guesses among them: {rule['expected_lucky_known']}); years known after "
            f"the implant: {world['implant']['years_known_after']:.2f}; control facts: {control['used']} "
            f"of the {control['candidates']} it does not know, "
            f"{control['wrong_under_cloze_on_original']} still wrong under the cloze after the implant"
        )
        extra = {"world": world["stages"]}
        given = {"batch_size": a.batch_size, "budget": a.budget, "steps": a.steps, "seed": a.seed}
        settings = UnlearnSettings(**{**REAL_UNLEARN, **given})
        results, by_kind, ks = unlearn_and_study(
            out,
            world,
            tuple(a.methods),
            settings,
            "real",
            a.grid,
            runtime,
            executor,
            not a.quiet,
            extra,
            tuple(lenses),
            rotations=a.rotations,
            hours=a.hours,
            started=start,
        )
        finish_kinds(results, by_kind, ks, start)


def add(subparsers) -> None:
    re_ = subparsers.add_parser(
        "real", help="the whole job on a real pretrained model (SmolLM2-135M) and the paper's data"
    )
    re_.add_argument("--model", help="a GGUF file or a checkpoint folder (default: the shipped SmolLM2)")
    re_.add_argument("--data", help="the paper's data folder (default: shared/datasets/deeb-roger-2024)")
    re_.add_argument("--out", default="runs/real")
    re_.add_argument(
        "--methods",
        type=_split_list,
        default=("gd", "rmu", "npo"),
        help="comma-separated (default gd,rmu,npo)",
    )
    re_.add_argument("--forget-splits", type=_positive_int, default=RealConfig.forget_splits)
    re_.add_argument(
        "--per-split",
        type=_per_split,
        default=RealConfig.per_split,
        help="forget (and control) facts per split, each kind; 'all': every fact the data has (paper sizes)",
    )
    re_.add_argument(
        "--rotations",
        type=_positive_int,
        default=None,
        help="forget splits RTT takes in turn as V in its first pass (default: the grid's, 1; a look "
        "takes the next for rows left inconclusive); a rerun reuses the runs done",
    )
    re_.add_argument("--retain", type=_positive_int, default=24, help="known years facts kept")
    re_.add_argument("--near", type=_positive_int, default=12, help="implanted birthdays kept")
    re_.add_argument("--implant-lr", type=_positive_float, default=1e-4)
    re_.add_argument("--implant-epochs", type=_positive_int, default=10)
    re_.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="optimizer steps per unlearning run (default: each method's passes over its kind's forget set, "
        "e.g. GD 2.5, RMU 5)",
    )
    re_.add_argument(
        "--budget",
        type=_positive_int,
        default=REAL_UNLEARN["budget"],
        help=f"unlearning runs per method at most (default {REAL_UNLEARN['budget']})",
    )
    re_.add_argument("--batch-size", type=_positive_int, default=REAL_UNLEARN["batch_size"])
    re_.add_argument("--grid", default="real", help="the study's grid: real (default, 2 CPU cores) or paper")
    re_.add_argument(
        "--lenses",
        type=_split_list,
        default=None,
        help=f"comma-separated lenses to run (default: {','.join(REAL_LENSES)}; any of the study's)",
    )
    re_.add_argument(
        "--hours",
        type=_positive_float,
        default=REAL_HOURS,
        help="the whole run's time: what the first pass leaves goes to looks at rows still inconclusive "
        f"(the next forget split as V, alpha split over the looks; default {REAL_HOURS:g})",
    )
    re_.add_argument("--seed", type=int, default=0)
    re_.add_argument("--quiet", action="store_true", help="no progress bars")
    re_.add_argument("--force", **FORCE)
    _runtime_args(re_, grid=True)
    re_.set_defaults(func=cmd_real)
