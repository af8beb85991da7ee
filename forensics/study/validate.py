"""`forensics validate`: models whose right verdict is known by construction (docs/design.md §9), a study on
them, and the confusion table of expected against given verdicts — the toolkit's own accuracy.

- exact: the world's never-learned model, and a second one retrained with another seed → never hidden;
- planted: the original with one block fine-tuned (wrong answers + retain, that block's parameters only)
  to suppress the forget answers; everything below that block is the original's → hidden, the
  information map above the control below the block, and the action map peaking at the block;
- output-only: only the final norm and unembedding fine-tuned the same way → hidden at every layer.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from forensics.errors import InputError
from forensics.facts.core import Sets
from forensics.facts.formats import default_format
from forensics.lenses import REGISTRY
from forensics.lenses.base import INFORMATION
from forensics.models.arch import arch_of, arch_of_checkpoint
from forensics.models.checkpoint import load_checkpoint, load_tokenizer, save_checkpoint
from forensics.models.executor import Executor
from forensics.models.pair import context_length
from forensics.models.runtime import Runtime
from forensics.models.scoring import score
from forensics.models.train import TrainConfig, train
from forensics.outdir import claim
from forensics.study.from_world import world_study
from forensics.study.run import run_study
from forensics.unlearn import ria
from forensics.unlearn.run import UnlearnSettings, forget_target, streams
from forensics.worlds.spec import WorldConfig
from forensics.worlds.world import build_world, load_world, train_world_model

EXPECTED = {"exact": "erased", "exact_reseeded": "erased", "planted": "hidden", "output_only": "hidden"}
# the information lenses the confusion table is judged on (Holm across all of them), cheap ones first
LENSES = ("accuracy", "relearn", "quantize", "probes", "ablate", "incontext", "formats", "tuned")
# the suppression fine-tune per part: the output layer alone needs a larger step to move the answers
SUPPRESS = {
    "demo": {
        "block": TrainConfig(lr=3e-3, steps=150, batch_size=16, warmup=5),
        "output": TrainConfig(lr=3e-2, steps=200, batch_size=16, warmup=5),
    },
    # a pretrained ~100M model (`forensics real`): its own scale of step, a batch of 8; one block of
    # SmolLM2's 30 takes more steps than the tiny worlds' (60 steps at 3e-4 left forget at 0.71), and
    # the output layer too (60 steps at 1e-3 left forget at 0.65), so both train until the unlearning
    # rule is met, checked every 20 steps
    "real": {
        "block": TrainConfig(lr=1e-3, steps=240, batch_size=8, warmup=5, check_every=20),
        "output": TrainConfig(lr=1e-3, steps=240, batch_size=8, warmup=5, check_every=20),
    },
}


def suppressed(
    original: Path, sets: Sets, scorer: str, out: Path, part: str, seed: int, grid: str = "demo"
) -> Path:
    """The original fine-tuned on wrong answers (+ retain) in one part only: `block:N` or `output`,
    with the suppression settings of `grid` (the model's scale)."""
    model, tok = load_checkpoint(original)
    arch = arch_of(model.config)
    if part == "output":
        params = arch.output_params(model)
    else:
        params = list(arch.block_params(model, int(part.split(":")[1])).values())
    data = streams(sets, default_format(scorer))
    cfg = replace(SUPPRESS[grid][part.split(":")[0]], seed=seed)
    forget = sets.forget_facts()
    target = forget_target(sets, UnlearnSettings())

    def suppressed_yet(_, model) -> dict:  # the unlearning rule on the forget facts
        acc = score(model, tok, forget, scorer).accuracy
        return {"forget": acc, "stop": acc <= target}

    records = train(
        model,
        tok,
        {"wrong": data["wrong"], "retain": data["retain"]},
        cfg,
        loss=ria.loss({"rc": 1.0}, {}),
        params=params,
        on_epoch=suppressed_yet if cfg.check_every else None,
        desc=f"validate: suppress in {part}",
        progress=False,
    )
    meta = {"made_by": "forensics validate", "from": str(original), "trained": part}
    if cfg.check_every:
        meta["forget_by_check"] = [round(r["forget"], 3) for r in records]
    save_checkpoint(model, tok, out, meta)
    return out


def validation_models(
    world_dir: Path,
    world: dict,
    sets: Sets,
    out: Path,
    progress: bool = False,
    kind: str | None = None,
    grid: str = "demo",
) -> tuple[dict[str, Path], int]:
    """The validation checkpoints of one world (of `kind`'s facts in a two-kind world; built under
    `out` unless there) and the planted block. A two-kind world's control comes from a pretraining
    run and an implant, so no reseeded copy of it is made there."""
    original = world_dir / world["models"]["original"]["path"]
    block = arch_of_checkpoint(original).n_layers // 2
    control = world["kinds"][kind]["control"] if kind else "never_learned"
    # pretrained knowledge has no never-learned model: no exact row there (its control is facts)
    models = {"exact": world_dir / world["models"][control]["path"]} if control else {}
    reseeded = out / "exact_reseeded"
    if not kind and not (reseeded / "model.safetensors").exists():
        cfg = replace(WorldConfig.from_json(world["config"]), seed=world["config"]["seed"] + 1000)
        tok = load_tokenizer(original)
        facts = [*sets.near_retain, *sets.retain]
        model, _ = train_world_model(cfg, tok, facts, context_length(original), "reseeded", progress)
        save_checkpoint(model, tok, reseeded, {"made_by": "forensics validate", "seed": cfg.seed})
    if not kind:
        models["exact_reseeded"] = reseeded
    for name, part in (("planted", f"block:{block}"), ("output_only", "output")):
        path = out / name
        if not (path / "model.safetensors").exists():
            suppressed(original, sets, world["scorer"], path, part, world["config"]["seed"], grid)
        models[name] = path
    return models, block


def below_block(maps: dict, block: int) -> dict:
    """Does the planted model read above the control below its tuned block? Its residual there is the
    original's by construction, so at each layer below the block where a residual lens (probe or
    logit lens) reads beyond the control on the original (not blind), one must read above it on the
    planted model too. Layers where the original itself shows nothing (a real model's logit lens
    below its last few blocks) are not judged; none judged, or no residual lens run, is None."""
    lenses = [maps[k] for k in ("probe", "logit lens") if k in maps]
    below = sorted({x for m in lenses for x in m["layers"] if x.isdigit() and int(x) < block}, key=int)
    if any("embed" in m["layers"] for m in lenses):
        below.insert(0, "embed")
    seen = {}
    for x in below:
        # the lower ends of the 95% intervals of the lenses that read beyond the control on the original
        reads = [m["lo"][i] for m in lenses if x in m["layers"] and not m["blind"][i := m["layers"].index(x)]]
        if reads:
            seen[x] = max(reads) > 0
    return {
        "above_control_below_block": all(seen.values()) if seen else None,
        "layers_judged_below_block": f"{len(seen)} of {len(below)}",
    }


def action_at_block(action: dict | None, block: int) -> dict:
    """Does the planted model's action map point at its tuned block? Per action row (‖ΔW‖/‖W‖, forget
    accuracy gained by reverting a block, …) the block where it is largest; at the block only if
    every row peaks there. None without an action map."""
    rows = {k: v for k, v in (action or {}).items() if k != "layers"}
    peaks = {}
    for row, values in rows.items():
        at = [(v, layer) for v, layer in zip(values, action["layers"], strict=True) if v is not None]
        if at:
            peaks[row] = max(at)[1]
    at_block = all(p == str(block) for p in peaks.values()) if peaks else None
    return {"action_peaks": peaks, "action_at_block": at_block}


def validate_world(
    world_dir: Path,
    out: Path,
    progress: bool = False,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
    kind: str | None = None,
    grid: str = "demo",
    lenses: tuple[str, ...] = LENSES,
) -> list[dict]:
    """Validation models, a study on them with `lenses` (`grid`: the demo's, or `real` for a
    pretrained model), one row per model."""
    world, sets = load_world(world_dir, kind)
    models, block = validation_models(world_dir, world, sets, out, progress, kind, grid)
    name = f"validate-{world_dir.name}" + (f" ({kind})" if kind else "")
    # the weights lens (an action lens, seconds) draws the action map the planted row is checked against
    lenses = tuple(dict.fromkeys((*lenses, "weights")))
    cfg = world_study(name, world_dir, world, models, out / "study", lenses, runtime, executor, kind, grid)
    results = run_study(cfg, progress=progress)
    rows = []
    for name, expected in EXPECTED.items():
        if name not in models:
            continue
        row = results["summary"][name]
        verdict = row["verdict"]
        got = (
            "hidden"
            if verdict.startswith("hidden")
            else "erased"
            if verdict.startswith("erased")
            else verdict
        )
        entry = {"world": world_dir.name, "model": name, "expected": expected, "verdict": verdict, "got": got}
        entry["deciding"] = row.get("deciding")
        if name == "planted":
            entry["block"] = block
            entry.update(below_block(row["information_map"], block))
            entry.update(action_at_block(row.get("action_map"), block))
        rows.append(entry)
    return rows


def validate(
    world_dir: Path,
    out: Path,
    seeds: int = 1,
    progress: bool = False,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
    kind: str | None = None,
    grid: str = "demo",
    lenses: tuple[str, ...] = LENSES,
) -> dict:
    """Validation over the given world and `seeds - 1` more worlds of its config with other seeds (on
    `kind`'s facts in a two-kind world), with `grid`'s study and suppression settings and `lenses`
    (accuracy always: the verdict needs it)."""
    start = time.perf_counter()
    known = ["accuracy", *(n for n, lens in REGISTRY.items() if lens.kind == INFORMATION)]
    for lens in lenses:
        if lens not in known:
            raise InputError(f"--lenses: '{lens}' is not an information lens ({', '.join(known)})")
    world_dir, out = Path(world_dir), Path(out)
    world, _ = load_world(world_dir, kind)
    if grid not in SUPPRESS:
        raise InputError(f"--grid {grid}: choose {', '.join(SUPPRESS)}")
    lenses = tuple(dict.fromkeys(("accuracy", *lenses)))
    if seeds > 1 and "known_facts" in world:
        raise InputError(f"{world_dir}: a real model's world has one seed (its pretraining): --seeds 1")
    rows = []
    with claim(out, "validate"):
        worlds = [world_dir]
        for k in range(1, seeds):
            cfg = WorldConfig.from_json(world["config"])
            other = out / f"world_seed{cfg.seed + k}"
            build_world(other, replace(cfg, seed=cfg.seed + k), progress=progress, runtime=runtime)
            worlds.append(other)
        for w in worlds:
            rows += validate_world(
                w, out / f"models_{w.name}", progress, runtime, executor, kind, grid, lenses
            )
    confusion: dict[str, dict[str, int]] = {}
    for r in rows:
        cell = confusion.setdefault(r["expected"], {})
        cell[r["got"]] = cell.get(r["got"], 0) + 1
    return {"rows": rows, "confusion": confusion, "seconds": round(time.perf_counter() - start, 1)}
