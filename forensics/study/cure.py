"""From diagnosis to cure (docs/design.md §14): a study draws an unlearned model's information map;
UNDO's noise-and-distil (`forensics.unlearn.undo`) then runs on the k blocks where the map says the
hidden information is written (`located`) and, as controls with the same k, α and distillation cap,
on the k blocks the map ranks lowest, on k random blocks (several draws) and on every block (UNDO's
global version, with a larger cap: the steps it needs). A second study puts every cure through every
lens beside the exact control, and the cures are compared on what RTT brings back.

The map's rule: each block's score is the most any information lens reads above the control at its
output (the lower end of the 95% interval, layers where a lens is blind on the original left out);
blocks are ranked by how much their output's score rises over their input's (the embedding's for
block 0): the blocks that write the hidden information, not those that only carry it on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from forensics.errors import InputError
from forensics.lenses import REGISTRY, check_lenses
from forensics.models.arch import arch_of_checkpoint
from forensics.models.checkpoint import write_json
from forensics.models.executor import Executor
from forensics.models.runtime import Runtime
from forensics.outcomes import with_ci
from forensics.outdir import claim
from forensics.study.from_world import world_study
from forensics.study.rtt_figures import RTT, interval95
from forensics.study.run import run_study
from forensics.study.verdict import paired_bootstrap
from forensics.unlearn import CURES, METHODS
from forensics.unlearn.run import UnlearnSettings, unlearn
from forensics.worlds.real_config import REAL_UNLEARN
from forensics.worlds.world import load_world

DIAGNOSIS_LENSES = ("accuracy", "probes")  # what draws the information map the cures read
CONTROLS = ("lowest", "random", "global")


@dataclass(frozen=True)
class CureSettings:
    """What the cures share. `k`: blocks per located or control cure (default a quarter of the
    model's, at least one); `alpha`: UNDO's noise share; `draws`: random-block cures; `steps`: the
    distillation cap of the located and control cures (default UNDO's own); `global_factor`: global
    UNDO's cap as a multiple of that; `controls`: which of the cures that ignore the map run beside
    the located one (all by default; on a model where each costs an hour, a researcher may stage them)."""

    method: str = "gd"
    k: int | None = None
    alpha: float = 0.5
    draws: int = 3
    steps: int | None = None
    global_factor: int = 4
    seed: int = 0
    controls: tuple[str, ...] = CONTROLS

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"--method {self.method}: choose {', '.join(METHODS)}")
        if self.k is not None and self.k < 1:
            raise InputError(f"'k' must be at least 1 (got {self.k})")
        if not 0 < self.alpha <= 1:
            raise InputError(f"'alpha' must be in (0, 1] (got {self.alpha})")
        if self.draws < 1 or self.global_factor < 1:
            raise InputError(
                f"'draws' and 'global_factor' must be at least 1 (got {self.draws}, {self.global_factor})"
            )
        if self.steps is not None and self.steps < 1:
            raise InputError(f"'steps' must be at least 1 (got {self.steps})")
        if unknown := [c for c in self.controls if c not in CONTROLS]:
            raise InputError(f"--controls {','.join(unknown)}: choose among {', '.join(CONTROLS)}")


def block_scores(info_map: dict, n_layers: int) -> tuple[float, list[float]]:
    """(the embedding's score, each block's): the highest lower 95% end of (model − control) any
    information lens reads at that layer, where the lens is not blind there; 0 where none reads."""

    def at(layer: str) -> float:
        ends = [
            e["lo"][i]
            for e in info_map.values()
            if layer in e["layers"] and not e["blind"][i := e["layers"].index(layer)]
        ]
        return max([0.0, *ends])

    return at("embed"), [at(str(b)) for b in range(n_layers)]


def rank_blocks(info_map: dict, n_layers: int) -> list[dict]:
    """Every block, most to least where the map says the information is written: by the rise of its
    output's score over its input's, ties to the earlier block."""
    embed, scores = block_scores(info_map, n_layers)
    rows = [
        {"block": b, "score": s, "rise": s - (scores[b - 1] if b else embed)} for b, s in enumerate(scores)
    ]
    return sorted(rows, key=lambda r: (-r["rise"], r["block"]))


def choices(
    ranking: list[dict], k: int, draws: int, seed: int, controls: tuple[str, ...] = CONTROLS
) -> dict[str, list[int] | None]:
    """The blocks of each cure: located (the top k), then of the `controls` named: lowest (the bottom
    k), `draws` random k-sets (seeded: the same draws whichever other controls run) and global (None:
    every block)."""
    order = [r["block"] for r in ranking]
    rng = np.random.default_rng(seed)
    out: dict[str, list[int] | None] = {"located": sorted(order[:k])}
    if "lowest" in controls:
        out["lowest"] = sorted(order[-k:])
    for d in range(draws if "random" in controls else 0):
        out[f"random_{d + 1}"] = sorted(int(b) for b in rng.choice(len(order), size=k, replace=False))
    if "global" in controls:
        out["global"] = None
    return out


def cure_world(
    world_dir: Path,
    out: Path,
    settings: CureSettings = CureSettings(),
    grid: str = "demo",
    lenses: tuple[str, ...] | None = None,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
    kind: str | None = None,
    progress: bool = False,
    force: bool = False,
) -> dict:
    """Unlearn with `settings.method`, diagnose (a study of it: the information map), cure (located and
    the controls), then a study of every cure with `lenses` (the grid's defaults when None); returns
    that study's results with its `cure` section, its report and summary.md under OUT/study. Every
    stage resumes: checkpoints by their request, studies by their stages' keys."""
    from forensics.study.grids import GRIDS

    world_dir, out = Path(world_dir), Path(out)
    if grid not in GRIDS:
        raise InputError(f"--grid {grid}: choose {', '.join(GRIDS)}")
    if lenses is not None:
        check_lenses(lenses, "--lenses")
    world, sets = load_world(world_dir, kind)  # what cannot be read or run stops it before OUT is made
    n_layers = arch_of_checkpoint(world_dir / world["models"]["original"]["path"]).n_layers
    k = settings.k or max(1, n_layers // 4)
    if k >= n_layers:
        raise InputError(f"--k {k}: a cure of every block is the global one (the model has {n_layers})")
    with claim(out, "cure", force):
        return _cure(
            world_dir,
            (world, sets),
            out,
            settings,
            (k, n_layers),
            grid,
            lenses,
            runtime,
            executor,
            kind,
            progress,
        )


def _cure(world_dir, loaded, out, settings, sizes, grid, lenses, runtime, executor, kind, progress) -> dict:
    """`cure_world`'s work in its claimed OUT: `loaded` is the world's (metadata, sets), `sizes` (k,
    the model's blocks)."""
    from forensics.study.config import DEFAULT_LENSES
    from reports.html import write_report
    from reports.markdown import write_summary

    start = time.perf_counter()
    (world, sets), (k, n_layers) = loaded, sizes
    original = world_dir / world["models"]["original"]["path"]
    # the teacher is unlearned as the world's own job does it: `forensics real`'s settings on a real
    # model's world, the demo's light point (batches of 16) on a micro one
    if "known_facts" in world:
        base = UnlearnSettings(scorer=world["scorer"], seed=settings.seed, **REAL_UNLEARN)
    else:
        base = UnlearnSettings(scorer=world["scorer"], seed=settings.seed, light=True, batch_size=16)
    method = settings.method
    teacher = out / "checkpoints" / method
    unlearn(method, original, sets, teacher, base, progress=progress)

    diagnosis_cfg = world_study(
        f"diagnosis ({method})",
        world_dir,
        world,
        {method: teacher},
        out / "diagnosis",
        DIAGNOSIS_LENSES,
        runtime,
        executor,
        kind,
        grid,
    )
    diagnosis = run_study(diagnosis_cfg, progress=progress)
    row = diagnosis["summary"][method]
    ranking = rank_blocks(row["information_map"], n_layers)
    blocks = choices(ranking, k, settings.draws, settings.seed, settings.controls)
    cap = settings.steps or CURES["undo"].steps
    cures, records = {}, {}
    for name, chosen in blocks.items():
        path = out / "checkpoints" / f"cure_{name}"
        steps = cap * (settings.global_factor if chosen is None else 1)
        cure_settings = replace(
            base,
            fixed={"blocks": chosen, "alpha": settings.alpha},
            baseline=str(original),
            steps=steps,
            budget=1,
            checks=max(1, steps // 20),
        )
        meta = unlearn("undo", teacher, sets, path, cure_settings, progress=progress)
        cures[f"cure_{name}"] = path
        kept = meta["chosen"]
        records[name] = {
            "blocks": kept["params"]["blocks"],
            "alpha": settings.alpha,
            "steps": kept["steps"],
            "cap": steps,
            "seconds": meta["cost"]["seconds"],
            "met": kept["met"],
            "forget": kept["accuracy"]["forget"],
            "retain": kept["accuracy"]["retain"],
        }
    lenses = tuple(lenses or DEFAULT_LENSES)
    cfg = world_study(
        f"cures of {method}",
        world_dir,
        world,
        {method: teacher, **cures},
        out / "study",
        lenses,
        runtime,
        executor,
        kind,
        grid,
    )
    results = run_study(cfg, progress=progress)
    results["cure"] = cure_section(results, settings, k, ranking, records, time.perf_counter() - start)
    write_json(results, out / "study" / "results.json")
    report = write_report(results, out / "study" / "report" / "index.html")
    write_summary(results, out / "study" / "summary.md", report)
    return results


def rtt_outcomes(results: dict, name: str) -> tuple[np.ndarray, list[int]] | None:
    """RTT's per-fact outcomes on V [seeds, facts] and those facts (None when RTT did not run on it)."""
    return REGISTRY["relearn"].outcomes(results, name).get(RTT)


def difference(results: dict, others: list[str], name: str, seed: int) -> dict | None:
    """mean RTT accuracy on V of `others` (averaged per fact and seed) − `name`'s, paired on the same
    facts and seeds, with its 95% interval: > 0 when the others bring back more than `name`."""
    mine = rtt_outcomes(results, name)
    theirs = [rtt_outcomes(results, o) for o in others]
    if mine is None or any(t is None or t[1] != mine[1] for t in theirs):
        return None
    seeds = min(t[0].shape[0] for t in [mine, *theirs])
    pooled = np.mean([t[0][:seeds] for t in theirs], axis=0)
    strata = np.array(results["facts"]["splits"])[mine[1]]
    draws = paired_bootstrap(pooled, mine[0][:seeds], strata, 2000, seed)
    return {"diff": float(pooled.mean() - mine[0][:seeds].mean()), "ci95": interval95(draws)}


def cure_section(
    results: dict, settings: CureSettings, k: int, ranking: list[dict], records: dict, seconds: float
) -> dict:
    """Per cure its blocks, compute, retain, RTT accuracy on V and verdict; the map's choice against
    the lowest-ranked and the random ones (RTT on V: theirs − located's), and its cost against
    global UNDO's; one sentence that says it."""
    summary = results["summary"]
    for name, rec in records.items():
        row = summary.get(f"cure_{name}", {})
        rec |= {
            "verdict": row.get("verdict"),
            "rtt_acc_v": row.get("rtt_acc_v"),
            "recovery": row.get("recovery"),
        }
    others = {
        "lowest": ["cure_lowest"],
        "random": [f"cure_{n}" for n in records if n.startswith("random_")],
        "global": ["cure_global"],
    }
    against = {  # only the controls that ran
        name: difference(results, others[name], "cure_located", settings.seed + i)
        for i, name in enumerate(CONTROLS)
        if name in settings.controls
    }
    return {
        "settings": asdict(settings) | {"k": k},
        "rule": "blocks ranked by the rise of the information map's score (the highest lower 95% end of "
        "model − control any information lens reads) from a block's input to its output",
        "ranking": ranking,
        "cures": records,
        "against": against,
        "map_ranks": (ranks := any(r["score"] > 0 for r in ranking)),
        "tie_break": (ties := tie_break(ranking, records)),
        "words": cure_words(records, against, ranks, ties),
        "seconds": round(seconds, 1),
    }


def tie_break(ranking: list[dict], records: dict) -> list[int]:
    """The located blocks the map does not rank above the others (a rise of zero or less): there only
    because k asked for more blocks than the map points at, picked by the tie-break (earliest first)."""
    rise = {r["block"]: r["rise"] for r in ranking}
    return [b for b in records.get("located", {}).get("blocks") or [] if rise.get(b, 0.0) <= 0]


def cure_words(
    records: dict, against: dict, ranks: bool = True, ties: tuple[int, ...] | list[int] = ()
) -> str:
    """Whether the map's choice beat the lowest-ranked and random ones; its cost against global UNDO's.
    Where the map reads nothing above the control at any block (`ranks` False), it says so first: the
    located blocks are then the tie-break's, and the comparison tests nothing of the map; where only
    some are (`ties`), it names them, since what they do is not the map's."""
    flat = "the map reads nothing above the control at any block: the located blocks are the tie-break's"
    parts = [] if ranks else [flat]
    if ranks and ties:
        parts.append(
            f"located block{'s' * (len(ties) > 1)} {', '.join(map(str, ties))}: the tie-break's, not the "
            "map's (k is more than the blocks where the map's score rises)"
        )
    for name, label in (("lowest", "the lowest-ranked blocks"), ("random", "random blocks")):
        if name not in against:  # not run (`controls`)
            continue
        d = against[name]
        if d is None:
            parts.append(f"against {label}: RTT did not run on both")
            continue
        figure = with_ci(d["diff"], *d["ci95"], signed=True)
        if d["ci95"][0] > 0:
            said = f"RTT brings back more after a cure of {label} ({figure}): the map's choice beat them"
        elif d["ci95"][1] < 0:
            said = f"RTT brings back less after a cure of {label} ({figure}): the map's choice lost to them"
        else:
            said = f"after RTT the located cure and a cure of {label} cannot be told apart ({figure})"
        parts.append(said)
    loc, glob = records.get("located"), records.get("global")
    if loc and glob:
        parts.append(
            f"located: {len(loc['blocks'])} block{'s' * (len(loc['blocks']) > 1)}, {loc['steps']} "
            "distillation steps "
            f"({loc['seconds']:.0f} s); global UNDO: every block, {glob['steps']} steps "
            f"({glob['seconds']:.0f} s)"
            + ("" if glob["met"] else ", its retain still below the rule at its cap")
        )
    return "; ".join(parts)
