"""RTT, the paper's relearning attack (docs/design.md §1): fine-tune on forget splits T, score the held-out V.

Every forget split takes its turn as V; for each model and V the attack sweeps learning rates and
scores V after every epoch. The best (learning rate, epoch) per V is the attacker's best case.
Each (model, V, lr) run is saved on its own, so an interrupted attack resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from forensics.attacks.adequacy import assess, compute, extended, rule
from forensics.attacks.attackable import attackable, check_lora_targets
from forensics.attacks.rtt_settings import RelearnSettings
from forensics.attacks.selection import best_per_v, rtt_metrics, score_chance
from forensics.errors import InputError, warn
from forensics.facts.core import Sets
from forensics.facts.formats import examples
from forensics.models.arch import arch_of
from forensics.models.checkpoint import cached_checkpoint, read_json, release_cached, write_json
from forensics.models.digest import checkpoint_digest, facts_digest, key
from forensics.models.executor import Executor, Job
from forensics.models.runtime import Runtime
from forensics.models.scoring import score
from forensics.models.train import TrainConfig, train
from forensics.outcomes import bits
from forensics.outdir import safe_name


def check(sets: Sets, settings: RelearnSettings, only_v: Sequence[str] = ()) -> list[str]:
    """Refuse an attack that cannot run; returns the V splits to rotate over (the first
    `settings.rotations` of them, when set)."""
    if len(sets.forget) < 2:
        raise InputError(f"RTT needs at least 2 forget splits to rotate over (have {list(sets.forget)})")
    for v in only_v:
        if v not in sets.forget:
            raise InputError(f"V split '{v}' is not a forget split (forget: {', '.join(sets.forget)})")
    return (list(only_v) or list(sets.forget))[: settings.rotations]


def run_one(
    model,
    tok,
    sets: Sets,
    v: str,
    lr: float,
    settings: RelearnSettings,
    before: float,
    progress: bool,
    layer: int | None = None,
    on_epoch=None,
    only_v: bool = False,
    seed: int = 0,
) -> dict:
    """One RTT run: train a copy of `model` on T at `lr`; acc on V, retain and (until fitted) T after
    each epoch.

    `before` is the model's V accuracy before the attack, recorded with the run. `layer` restricts
    the update to that block's parameters; `on_epoch(epoch, model)` also runs after each epoch;
    `only_v` skips scoring T and retain; `seed` seeds the training run. Each epoch records which V
    facts are right (`v_correct`, a 0/1 string in V's order): the per-fact outcomes of the verdict. A
    run whose loss stops being finite ends there, with `diverged` (the step, the dtype: `train`).
    """
    t_facts = [f for name, facts in sets.forget.items() if name != v for f in facts]
    v_facts = list(sets.forget[v])
    c_facts = sets.control_of(v) if sets.control else []
    start = time.perf_counter()
    epochs: list[dict] = []

    def measure(epoch: int, m) -> dict | None:
        if on_epoch is not None:
            on_epoch(epoch, m)
        # V, the control facts beside it (what the same run teaches where nothing was known), T and
        # retain are scored in one pass: full batches, one plan per run. T only until it is fitted: what
        # reads it (early stop, adequacy: T's best accuracy) has its answer then (on SmolLM2 the same runs
        # took 0.2–2.8 s less of 64–192 s: little)
        parts = {"v": v_facts, "c": c_facts}
        fitted_before = any(e.get("acc_t", 0.0) >= settings.fit_t for e in epochs)
        if not only_v:
            if not fitted_before:
                parts["t"] = t_facts
            if settings.score_retain:
                parts["retain"] = list(sets.retain)
        right = score(m, tok, [f for facts in parts.values() for f in facts], settings.scorer).correct
        got = dict(zip(parts, np.split(right, np.cumsum([len(f) for f in parts.values()])[:-1]), strict=True))
        record = {"epoch": epoch, "acc_v": float(got["v"].mean()), "v_correct": bits(got["v"])}
        if c_facts:
            record.update(acc_c=float(got["c"].mean()), c_correct=bits(got["c"]))
        if "t" in got:
            record["acc_t"] = float(got["t"].mean())
        if "retain" in got:
            record["retain"] = float(got["retain"].mean())
        epochs.append(record)
        best = max(range(len(epochs)), key=lambda i: epochs[i]["acc_v"])
        # early stop once V has not improved for `patience` epochs, but never before T is fitted: a run
        # stopped short of fitting T has not shown that the attack could train
        fitted = fitted_before or only_v or record["acc_t"] >= settings.fit_t
        if settings.patience is not None and fitted and len(epochs) - 1 - best >= settings.patience:
            return {"stop": True}
        return None

    cfg = TrainConfig(lr=lr, epochs=settings.epochs, batch_size=settings.batch_size, seed=seed)
    with attackable(model, settings, seed) as attacked:
        params = [p for p in attacked.parameters() if p.requires_grad]
        if layer is not None:
            arch = arch_of(model.config)
            params = [
                p for n, p in attacked.named_parameters() if p.requires_grad and arch.layer_of(n) == layer
            ]
        history = train(
            attacked,
            tok,
            {"t": examples(t_facts, settings.fmt)},
            cfg,
            params=params,
            on_epoch=measure,
            desc=f"RTT V={v} lr={lr:g}",
            progress=progress,
        )
    last = history[-1]  # a run that stopped on a loss that is not finite took fewer steps than its epochs
    return {
        "v": v,
        "lr": lr,
        "train_seed": seed,
        "layer": layer,
        "before": {"acc_v": before},
        "epochs": epochs,
        "epoch_limit": settings.epochs,
        "steps": last["step"],
        "examples": min(len(history) * len(t_facts), last["step"] * settings.batch_size),
        "seconds": round(time.perf_counter() - start, 2),
        **({"diverged": last["diverged"]} if "diverged" in last else {}),  # its loss stopped being finite
    }


def relearn(
    models: Mapping[str, Path],
    sets: Sets,
    out: Path,
    settings: RelearnSettings = RelearnSettings(),
    only_v: Sequence[str] = (),
    progress: bool = True,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
) -> dict:
    """RTT on every model over the rotation, LR and seed grid, grown while some model's attack is not
    adequate (`adequacy.extended`: the same grid on every model); writes `out/relearn.json` and
    returns it. Each (model, V, lr, epochs, seed) run is a job of `executor` that writes its own file
    under `out/relearn/<model>/`; a run whose file holds the same key is read back, not redone."""
    vs = check(sets, settings, only_v)
    if settings.method == "lora" and settings.lora_targets:
        check_lora_targets(next(iter(models.values())), settings.lora_targets)
    out = Path(out)
    chance = score_chance(sets)
    weights = {name: checkpoint_digest(path) for name, path in models.items()}
    current, rounds, spent = settings, [], {name: [] for name in models}
    while True:
        grid = _run_round(models, weights, sets, vs, current, out, progress, runtime, executor)
        best = best_per_v(grid)
        adequacy = assess(
            grid,
            best,
            current.epochs,
            settings.fit_t,
            settings.fit_margin,
            settings.noise_facts,
            settings.edge_alpha,
        )
        for name, runs in grid.items():
            spent[name] += [r for r in runs if r not in spent[name]]
        rounds.append(
            {
                "lrs": list(sorted(current.lrs)),
                "epochs": current.epochs,
                "adequate": {name: a["adequate"] for name, a in adequacy.items()},
            }
        )
        following = extended(current, adequacy, settings.max_lr)
        if following is None or len(rounds) > settings.extend_rounds:
            break
        current = following
    release_cached()
    for name, a in adequacy.items():
        a["compute"] = compute(spent[name])
    result = {
        "settings": json.loads(json.dumps(asdict(settings))),
        "grid_run": {"lrs": list(sorted(current.lrs)), "epochs": current.epochs},
        "rounds": rounds,
        "chance": chance,
        "v_splits": vs,
        "models": {name: str(path) for name, path in models.items()},
        "grid": grid,
        "best": best,
        "adequacy": adequacy,
        "adequacy_rule": rule(settings.fit_t, settings.fit_margin, settings.noise_facts, settings.edge_alpha),
        "note": "best = the last round's (lr, epoch) chosen on V (the paper's figure: *_max); the verdict "
        "reads each fact at a cell chosen on the other half of V (cross-fitted) unless select = 'max'",
    }
    result["metrics"] = rtt_metrics(result["best"], chance, settings.select)
    write_json(result, out / "relearn.json")
    return result


# how a run is done, where the settings do not say it: 2 scores T only until fitted and stops early on T
# fitted once (1 scored it every epoch and asked it of the last); runs of another version are redone
RUN_VERSION = 2

# what a run's outcome does not depend on: the grid's other learning rates, seeds and V splits, how
# adequacy is judged (fit_t is not among them: early stop reads it) and how the figure is chosen; so
# more rotations or seeds reuse the runs already done
NOT_IN_RUN = (
    *("lrs", "seeds", "rotations", "select", "budget_minutes", "looks"),
    *("fit_margin", "noise_facts", "edge_alpha", "extend_rounds", "max_lr"),
)


def _run_round(
    models: Mapping[str, Path],
    weights: Mapping[str, str],
    sets: Sets,
    vs: Sequence[str],
    settings: RelearnSettings,
    out: Path,
    progress: bool,
    runtime: Runtime,
    executor: Executor,
) -> dict[str, list[dict]]:
    """One round of the grid (every model × V × lr × seed, learning rates in increasing order so ties
    go to the smaller); returns each model's runs in grid order. Two models with the same content (the
    exact control named as a method too) train each run once: the run's key is the same."""
    run_settings = {k: v for k, v in json.loads(json.dumps(asdict(settings))).items() if k not in NOT_IN_RUN}
    runs: list[tuple[str, Path]] = []  # (model, run file) in grid order
    jobs: list[Job] = []
    scheduled: dict[str, Path] = {}  # run key -> the file its job writes
    twins: list[tuple[Path, Path, Path]] = []  # (run file, the same run's file, this model's checkpoint)
    for name, path in models.items():
        dtype = str(runtime.torch_dtype(path))  # float16 on CPU stops at once where float32 trains
        for v in vs:
            facts = (
                facts_digest(sets.forget[v]),
                facts_digest(t for u, fs in sets.forget.items() if u != v for t in fs),
                facts_digest(sets.control_of(v) if sets.control else []),
            )
            for lr in sorted(settings.lrs):
                for seed in settings.seeds:
                    # the run depends on the checkpoint's content and dtype, V's and T's facts, the
                    # settings, lr and seed; its training seed on (seed, weights, V, lr) only, so a
                    # model's numbers do not depend on which other models are in the study
                    parts = (weights[name], dtype, facts, run_settings, lr, seed)
                    run_key = _run_key(*parts)
                    stem = f"{safe_name(v)}_lr{lr:g}_e{settings.epochs}_s{seed}.json"
                    file = out / "relearn" / safe_name(name) / stem
                    runs.append((name, file))
                    if file.exists() and _done(file).get("key") == run_key:
                        continue
                    if run_key in scheduled:
                        twins.append((file, scheduled[run_key], path))
                    elif not _carried(file, parts, settings.epochs):
                        scheduled[run_key] = file
                        run = {"path": path, "sets": sets, "v": v, "lr": lr, "seed": seed}
                        run |= {"settings": settings, "runtime": runtime, "run_key": run_key, "file": file}
                        run |= {"progress": progress, "weights": weights[name]}
                        jobs.append(Job(fn=rtt_job, kwargs=run, num_gpus=runtime.gpus()))
    executor.run(jobs)
    for file, source, path in twins:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_json({**read_json(source), "from": str(path), "same_run_as": str(source)}, file)
    grid: dict[str, list[dict]] = {name: [] for name in models}
    for name, file in runs:
        grid[name].append(read_json(file)["run"])
    return grid


def _run_key(
    weights: str, dtype: str, facts: tuple, run_settings: dict, lr: float, seed: int, epochs=None
) -> str:
    """A run's key: the checkpoint's content and the dtype it trains in, V's, T's and the control's
    facts, the settings (at the epoch limit `epochs` when given), lr and seed."""
    at = run_settings if epochs is None else {**run_settings, "epochs": epochs}
    return key("rtt", RUN_VERSION, weights, dtype, facts, at, lr, seed)


def _carried(file: Path, parts: tuple, limit: int) -> bool:
    """Carry over a run (`_run_key`'s `parts`) that early stop ended before a shorter epoch limit: RTT
    trains at a constant rate in a seeded order, so under `limit` it is the same run, epoch by epoch,
    and growing the epochs redoes only the runs cut off at their limit. Written to `file`, marked
    `same_as` so that its compute is counted once."""
    for shorter in range(limit - 1, 0, -1):
        source = file.with_name(file.name.replace(f"_e{limit}_", f"_e{shorter}_"))
        done = _done(source) if source.exists() else {}
        run = done.get("run")
        if done.get("key") == _run_key(*parts, epochs=shorter) and run and len(run["epochs"]) < shorter:
            run = {**run, "epoch_limit": limit, "same_as": source.name}
            write_json({"key": _run_key(*parts), "from": done["from"], "run": run}, file)
            return True
    return False


def rtt_job(
    path: Path,
    sets: Sets,
    v: str,
    lr: float,
    seed: int,
    settings: RelearnSettings,
    runtime: Runtime,
    run_key: str,
    file: Path,
    progress: bool,
    weights: str,
) -> None:
    """One RTT run as a job: writes `file` ({key, from, run}); its training seed comes from
    (seed, weights, V, lr) alone, wherever it runs."""
    model, tok = cached_checkpoint(path, runtime, weights)
    before = score(model, tok, list(sets.forget[v]), settings.scorer).accuracy
    run_seed = derived_seed(seed, weights, v, lr)
    run = {"seed": seed, **run_one(model, tok, sets, v, lr, settings, before, progress, seed=run_seed)}
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json({"key": run_key, "from": str(path), "run": run}, file)


def _done(file: Path) -> dict:
    """A finished run's file, or {} (with a warning) when it cannot be read: it is then redone."""
    try:
        done = read_json(file)
        done["run"]["epochs"]
        return done
    except (InputError, KeyError, TypeError) as e:
        warn(f"{file}: unreadable RTT run, redoing it ({e})")
        return {}


def derived_seed(seed: int, weights: str, v: str, lr: float) -> int:
    """A training run's seed from (study seed, model weights digest, V, lr) alone."""
    return int(key("seed", seed, weights, v, lr)[:8], 16)
