"""A world's original unlearned by each method on each kind's forget set, then studied (one study per
kind and the kinds compared): the main job of `forensics demo` and `forensics real`."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from forensics.models.executor import Executor, Job
from forensics.models.runtime import Runtime
from forensics.outdir import safe_name
from forensics.study.config import DEFAULT_LENSES, KindStudy
from forensics.study.from_world import world_study
from forensics.study.kinds import run_kind_study
from forensics.study.run import run_study
from forensics.unlearn.run import UnlearnSettings, unlearn
from forensics.worlds.world import load_world


def unlearn_and_study(
    out: Path,
    world: dict,
    names: tuple[str, ...],
    settings: UnlearnSettings,
    label: str,
    grid: str = "demo",
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
    progress: bool = True,
    extra: dict | None = None,
    lenses: tuple[str, ...] = DEFAULT_LENSES,
    rotations: int | None = None,
    hours: float | None = None,
    started: float | None = None,
) -> tuple[dict, dict | None, KindStudy | None]:
    """Unlearn (every method × kind, jobs of `executor`), then the study (per kind and compared, in a
    two-kind world) on `grid`, RTT over the first `rotations` forget splits (None: the grid's); returns
    (results, the kinds' own results, the kinds study). The unlearning's seconds per checkpoint go into
    the results' `stages`, beside `extra`'s. With `hours`, what is left of them after the unlearning
    (counted from `started` on the perf counter) is shared between the studies as RTT's looks budget."""
    original = out / world["models"]["original"]["path"]
    jobs, studies, made = [], {}, []
    for kind in world.get("kinds") or [None]:
        _, sets = load_world(out, kind)
        methods = {n: out / "checkpoints" / safe_name(f"{n}_{kind}" if kind else n) for n in names}
        for n, path in methods.items():
            kwargs = {"name": n, "original": original, "sets": sets, "out": path, "settings": settings}
            kwargs |= {"progress": progress, "force": False, "runtime": runtime}
            jobs.append(Job(fn=unlearn, kwargs=kwargs, num_gpus=runtime.gpus()))
            made.append(path.name)
        name, where = (f"{label} ({kind})", out / kind) if kind else (label, out)
        studies[kind] = world_study(
            name,
            out,
            world,
            methods,
            where,
            lenses,
            runtime,
            executor,
            kind=kind,
            grid=grid,
            rotations=rotations,
        )
    started_unlearning = time.perf_counter()
    metas = executor.run(jobs)
    stages = {
        **(extra or {}),
        "unlearn": {m: meta["cost"]["seconds"] for m, meta in zip(made, metas, strict=True)},
        "unlearn wall": round(time.perf_counter() - started_unlearning, 1),
    }
    if hours is not None:  # each study's share of the time left: its first pass and its looks
        share = budget_share(hours, started or started_unlearning, len(studies))
        studies = {k: replace(cfg, settings=cfg.settings.budgeted(share)) for k, cfg in studies.items()}
    if world.get("kinds"):
        ks = KindStudy(label, out, studies)
        results, by_kind = run_kind_study(ks, progress=progress, stages=stages)
        return results, by_kind, ks
    return run_study(studies[None], progress=progress), None, None


def budget_share(hours: float, started: float, studies: int) -> float | None:
    """Each study's minutes (`budget_minutes`) when `hours` in all began at `started` (perf counter):
    what is left, shared evenly; None when nothing is (one pass at the full alpha, no look planned)."""
    left = hours * 60 - (time.perf_counter() - started) / 60
    return left / studies if left > 0 else None
