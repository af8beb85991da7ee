"""Run an unlearning method over a sweep that adapts to the data, and keep the paper's choice of run.

The rule a run must meet: forget accuracy ≤ chance + `forget_margin` with retain accuracy ≥
`min_retain` × the original's. Every run starts from the original and stops at the first check
where the whole rule holds (forget alone would stop methods with a retain term in the dip where
they have lost retain and not yet repaired it). The method's grid is the first round; while no run
meets the rule, each further round tries, from the best run that kept retain, a learning rate 3×
higher, and from the best run that lost it, the method's retain weight 3× higher (or, without one,
a learning rate 3× lower), until one meets it or `budget` runs are spent. The kept run is the
rule-meeting run with the lowest forget accuracy; when none meets it, the best run is kept and the
checkpoint is marked `unlearning_failed`. Every run, with its checks, is recorded in the checkpoint's
metadata. A checkpoint whose metadata matches the request is not redone (resume).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from forensics.errors import InputError
from forensics.facts.core import Sets
from forensics.facts.formats import default_format, examples, wrong_examples
from forensics.models.arch import arch_of_checkpoint
from forensics.models.checkpoint import (
    check_dir,
    check_writable,
    install_checkpoint,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from forensics.models.digest import CODE_VERSION, checkpoint_digest, facts_digest
from forensics.models.executor import Executor, Job
from forensics.models.pair import check_context
from forensics.models.runtime import Runtime
from forensics.models.scoring import accuracy_table, score
from forensics.models.tokens import collate, encode, pad_id
from forensics.models.train import TrainConfig, train
from forensics.unlearn import RUNNABLE

MADE_BY = "forensics unlearn"


@dataclass(frozen=True)
class UnlearnSettings:
    """What every method shares: scorer, batch size, seed, the retain floor and optional overrides."""

    scorer: str = "choice"
    batch_size: int = 32
    seed: int = 0
    min_retain: float = 0.9  # of the original's retain accuracy
    steps: int | None = None  # overrides each method's default (`run_steps`)
    fixed: dict = field(default_factory=dict)  # hyperparameters fixed at every point of the methods that
    # declare them fixable (`Method.fixable`): {"layer": 1} is RMU's layer
    lrs: tuple[float, ...] | None = None  # replaces the learning rates of each method's grid
    light: bool = False  # run only each method's DEMO point (the demo's grid), no further rounds
    start: str = "GRID"  # the first round: the method's GRID, or its REAL point (a pretrained model)
    forget_margin: float = 0.10  # the rule: forget accuracy at most chance + this
    budget: int = 12  # runs per method at most, the first round included
    checks: int = 10  # forget accuracy checks along each run (where it may stop early)
    baseline: str | None = None  # the checkpoint whose retain the rule is relative to (default: the one
    # unlearned; a cure started from an unlearned checkpoint names the true original)

    def __post_init__(self):
        from forensics.config import check_float  # the one check of float settings

        check_float(self.forget_margin, "'forget_margin'", 0, 1)
        check_float(self.min_retain, "'min_retain'", 0, 1)
        if self.budget < 1 or self.checks < 1:
            raise InputError(f"'budget' and 'checks' must be at least 1 (got {self.budget}, {self.checks})")
        if self.batch_size < 1:
            raise InputError(f"'batch_size' must be at least 1 (got {self.batch_size})")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"'steps' must be at least 1 (got {self.steps})")
        if self.start not in ("GRID", "REAL"):
            raise InputError(f"'start' must be GRID or REAL (got {self.start})")
        fixable = sorted({k for method in RUNNABLE.values() for k in method.fixable})
        for k in self.fixed:
            if k not in fixable:
                raise InputError(
                    f"no method has a hyperparameter '{k}' to fix (fixable: {', '.join(fixable)})"
                )
        if self.lrs is not None and not self.lrs:
            raise InputError("'lrs': at least one learning rate")
        for lr in self.lrs or ():
            check_float(lr, "learning rates", positive=True)


def check_method(name: str) -> None:
    if name not in RUNNABLE:
        raise InputError(f"unknown method '{name}' (choose from {', '.join(RUNNABLE)} or all)")


def streams(sets: Sets, fmt: str) -> dict[str, list]:
    """Forget, retain and wrong-answer texts: the scorer's format plus corpus statements."""

    def texts(facts):
        return examples(facts, fmt) + examples([f for f in facts if f.statements], "corpus")

    forget = sets.forget_facts()
    return {"forget": texts(forget), "retain": texts(list(sets.retain)), "wrong": wrong_examples(forget, fmt)}


def grid_for(name: str, settings: UnlearnSettings, n_layers: int) -> list[dict]:
    """The method's sweep, with the settings' learning rates and fixed hyperparameters applied, each
    point resolved on a model of `n_layers` blocks."""
    method = RUNNABLE[name]
    if settings.light:
        grid = [dict(method.demo)]
    elif settings.start == "REAL":
        grid = [dict(method.real)]
    else:
        grid = [dict(p) for p in method.grid]
    if settings.lrs is not None:
        others = list(dict.fromkeys(tuple((k, v) for k, v in p.items() if k != "lr") for p in grid))
        grid = [{"lr": lr, **dict(o)} for lr in settings.lrs for o in others]
    fixed = {k: v for k, v in settings.fixed.items() if k in method.fixable}
    return [method.resolve({**p, **fixed}, n_layers) for p in grid]


def _request(
    name: str, original: Path, sets: Sets, settings: UnlearnSettings, grid: list[dict], runtime: Runtime
) -> dict:
    """What determines an unlearned checkpoint; equal requests give equal checkpoints."""
    request = {
        "method": name,
        "from": str(Path(original).resolve()),
        "original": checkpoint_digest(original),  # its weights, config and tokenizer
        "forget": list(sets.forget),
        "retain": sorted({f.split for f in sets.retain}),
        "facts": facts_digest([*sets.forget_facts(), *sets.near_retain, *sets.retain]),
        "settings": asdict(settings),
        "steps": run_steps(name, settings, sets),
        "grid": grid,
        "runtime": runtime.as_json(),
        "code": CODE_VERSION,
    }
    if settings.baseline is not None:
        request["baseline_weights"] = checkpoint_digest(Path(settings.baseline))
    return json.loads(json.dumps(request))  # as it reads back from the metadata file


def run_steps(name: str, settings: UnlearnSettings, sets: Sets) -> int:
    """Optimizer steps per run: the settings' override; else, from a pretrained model's first point
    (start REAL), the method's `real_passes` over the forget set; else the method's own steps."""
    method = RUNNABLE[name]
    if settings.steps:
        return settings.steps
    if settings.start == "REAL":
        return math.ceil(method.real_passes * len(sets.forget_facts()) / settings.batch_size)
    return method.steps


def forget_target(sets: Sets, settings: UnlearnSettings) -> float:
    """The forget half of the rule: chance on the forget facts + `forget_margin`."""
    return float(np.mean([1 / len(f.choices) for f in sets.forget_facts()])) + settings.forget_margin


def unlearn(
    name: str,
    original: Path,
    sets: Sets,
    out: Path,
    settings: UnlearnSettings = UnlearnSettings(),
    progress: bool = True,
    force: bool = False,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
) -> dict:
    """Unlearn `sets.forget` from the checkpoint at `original` with method `name` (run where `runtime`
    says, saved in the dtype it was loaded in; each sweep point a job of `executor`); returns the
    metadata.

    A checkpoint at `out` made by the same request is returned as it is; one made by another request
    is redone; a folder at `out` that this command did not make is refused unless `force`."""
    check_method(name)
    check_dir(Path(original))
    check_context(
        original, [*sets.forget_facts(), *sets.retain], settings.scorer, default_format(settings.scorer)
    )
    grid = grid_for(name, settings, arch_of_checkpoint(original).n_layers)
    request = _request(name, original, sets, settings, grid, runtime)
    done = read_metadata(out) if Path(out).exists() else {}
    if done.get("request") == request and (Path(out) / "model.safetensors").exists():
        return done
    if Path(out).exists() and any(Path(out).iterdir()) and done.get("made_by") != MADE_BY and not force:
        raise InputError(
            f"{out}: exists and is not a checkpoint `forensics unlearn` made; --force writes into it"
        )
    check_writable(out)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # each run's model, until one is kept: a folder of this run's own, removed however the run ends
    sweep = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.", suffix=".sweep", dir=Path(out).parent))
    try:
        return _sweep(name, original, sets, out, settings, progress, runtime, executor, grid, request, sweep)
    finally:
        shutil.rmtree(sweep, ignore_errors=True)


def _sweep(
    name: str,
    original: Path,
    sets: Sets,
    out: Path,
    settings: UnlearnSettings,
    progress: bool,
    runtime: Runtime,
    executor: Executor,
    grid: list[dict],
    request: dict,
    sweep: Path,
) -> dict:
    """The sweep's rounds in `sweep`, then the kept run installed at `out`; its metadata."""
    reference = Path(settings.baseline) if settings.baseline is not None else original
    baseline = accuracy_table(*load_checkpoint(reference, runtime), sets, settings.scorer)
    target, floor = forget_target(sets, settings), settings.min_retain * baseline["retain"]
    common = {"name": name, "original": original, "sets": sets, "settings": settings}
    common |= {"progress": progress, "runtime": runtime, "target": target, "floor": floor}
    budget = len(grid) if settings.light else settings.budget  # the first round included
    runs: list[dict] = []
    pending = grid[:budget]
    while pending:
        jobs = [
            Job(
                fn=sweep_point,
                kwargs={"index": n, "params": params, "keep": sweep / str(n)} | common,
                num_gpus=runtime.gpus(),
            )
            for n, params in enumerate(pending, start=len(runs))
        ]
        number = 1 + (runs[-1]["round"] if runs else 0)
        for run in executor.run(jobs):
            run["round"] = number
            run["retain_ok"] = run["accuracy"]["retain"] >= floor
            run["met"] = run["retain_ok"] and run["accuracy"]["forget"] <= target
            runs.append(run)
        if any(r["met"] for r in runs):
            break
        pending = next_round(name, runs)[: max(0, budget - len(runs))]
    chosen = min(
        range(len(runs)),
        key=lambda i: (
            not runs[i]["met"],
            not runs[i]["retain_ok"],
            runs[i]["accuracy"]["forget"],
            -runs[i]["accuracy"]["retain"],
        ),
    )
    meta = {
        "made_by": MADE_BY,
        "method": name,
        "from": request["from"],
        "seed": settings.seed,
        "request": request,
        "original_accuracy": baseline,
        "chosen": runs[chosen],
        "unlearning_failed": not runs[chosen]["met"],
        "sweep": runs,
        "cost": {
            "runs": len(runs),
            "rounds": runs[-1]["round"],
            "seconds": round(sum(r["seconds"] for r in runs), 1),
        },
        "rule": {
            "text": f"forget <= chance + {settings.forget_margin:g} with retain >= "
            f"{settings.min_retain:g} x the original's",
            "forget_at_most": target,
            "retain_at_least": floor,
        },
    }
    meta = json.loads(json.dumps(meta))
    install_checkpoint(sweep / str(chosen), out, meta)
    return read_metadata(out)


def next_round(name: str, runs: list[dict]) -> list[dict]:
    """The next points when no run meets the rule: from the best run that kept retain (lowest forget),
    a learning rate 3× higher; from the best run that lost it (highest retain), the method's retain
    weight 3× higher, or a learning rate 3× lower for a method without one. Points already run are
    skipped for the next best run of the same kind."""
    tried = {json.dumps(r["params"], sort_keys=True) for r in runs}
    kept = sorted((r for r in runs if r["retain_ok"]), key=lambda r: r["accuracy"]["forget"])
    lost = sorted((r for r in runs if not r["retain_ok"]), key=lambda r: -r["accuracy"]["retain"])
    key = RUNNABLE[name].retain_key
    moves = [
        [{**r["params"], "lr": _g(r["params"]["lr"] * 3)} for r in kept],
        [
            {**r["params"], key: _g(r["params"][key] * 3)}
            if key
            else {**r["params"], "lr": _g(r["params"]["lr"] / 3)}
            for r in lost
        ],
    ]
    out = []
    for candidates in moves:
        fresh = next((p for p in candidates if json.dumps(p, sort_keys=True) not in tried), None)
        if fresh is not None:
            out.append(fresh)
            tried.add(json.dumps(fresh, sort_keys=True))
    return out


def _g(x: float) -> float:
    """Six significant digits: 3 × 1e-3 is 0.003, and a point reached twice is recognised."""
    return float(f"{x:.6g}")


def sweep_point(
    index: int,
    params: dict,
    keep: Path,
    name: str,
    original: Path,
    sets: Sets,
    settings: UnlearnSettings,
    progress: bool,
    runtime: Runtime,
    target: float,
    floor: float,
) -> dict:
    """One run of a method's sweep (a job): the original trained with `params` until, at one of the
    checks, its forget accuracy is at most `target` and its retain accuracy at least `floor` (or the
    steps run out), scored, saved to `keep`; returns its run record (the caller applies the rule to
    the final scores)."""
    start = time.perf_counter()
    method = RUNNABLE[name]
    reference, tok = load_checkpoint(original, runtime)
    for p in reference.parameters():
        p.requires_grad_(False)
    data = streams(sets, default_format(settings.scorer))
    sample = collate([encode(tok, e.prompt, e.target) for e in data["forget"][:64]], pad_id(tok))
    state = {"reference": reference, "seed": settings.seed, "forget_sample": sample}
    model = copy.deepcopy(reference)
    for p in model.parameters():
        p.requires_grad_(True)
    if method.prepare is not None:
        method.prepare(model, params, settings.seed)
    trainable = method.trainable(model, params) if method.trainable is not None else None
    steps = run_steps(name, settings, sets)
    cfg = TrainConfig(
        lr=params["lr"],
        steps=steps,
        batch_size=settings.batch_size,
        warmup=5,
        seed=settings.seed,
        check_every=max(1, steps // settings.checks),
    )
    forget = sets.forget_facts()

    def check(_: int, m) -> dict:
        acc = {"forget": score(m, tok, forget, settings.scorer).accuracy}
        if acc["forget"] <= target:  # retain is scored only when it can decide the stop
            acc["retain"] = score(m, tok, sets.retain, settings.scorer).accuracy
        return {**acc, "stop": acc.get("retain", -1.0) >= floor}

    history = train(
        model,
        tok,
        {s: data[s] for s in method.streams},
        cfg,
        loss=method.loss(params, state),
        params=trainable,
        on_epoch=check,
        desc=f"{name} run {index + 1}",
        progress=progress,
    )
    acc = accuracy_table(model, tok, sets, settings.scorer)
    save_checkpoint(model, tok, keep, {})
    return {
        "params": params,
        "accuracy": acc,
        "final_loss": history[-1]["loss"],
        "steps": history[-1]["step"],
        "stopped_early": history[-1]["step"] < steps,
        "checks": [{k: h[k] for k in ("step", "forget", "retain") if k in h} for h in history],
        "seconds": round(time.perf_counter() - start, 2),
    }
