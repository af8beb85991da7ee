"""The relearning attack (RTT, Deeb & Roger 2024): fine-tune on T, score V, per rotation and seed;
the paper's test of hidden versus erased."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from forensics.attacks.relearn import RelearnSettings
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes
from forensics.outcomes import Reading, unbits


def rtt_rows(best: dict | None, splits: list[str], key: str, field: str, chosen: str) -> np.ndarray | None:
    """[seeds, facts] per-fact outcomes of an RTT section's best runs, over the splits it took as V
    (in forget order; every forget split unless the grid rotates over fewer): the cross-fitted `field`
    where every run has it, else the outcomes at the cell `chosen` on the scored facts themselves."""
    if not best:
        return None
    vs = [v for v in dict.fromkeys(splits) if v in best]
    if not vs or not all(best[v].get(key) for v in vs):
        return None
    n_seeds = min(len(best[v][key]) for v in vs)
    if not all(field in c for v in vs for c in best[v][key]):
        field = chosen
    return np.stack([unbits("".join(best[v][key][i][field] for v in vs)) for i in range(n_seeds)])


def crossed(section: dict) -> bool:
    """Whether an RTT section's verdict reads cross-fitted outcomes (sections from before: the best cell)."""
    return section.get("settings", {}).get("select", "max") == "cross"


def v_facts(results: dict, best: dict) -> list[int]:
    """The indices of the forget facts in the splits RTT took as V."""
    return [i for i, s in enumerate(results["facts"]["splits"]) if s in best]


def judged(section: dict) -> dict[str, dict]:
    """The adequacy of an RTT section written before adequacy was judged, from its stored grid (its
    runs scored no T when `score_t_and_retain` was off: then `fitted` is None, not measured)."""
    from forensics.attacks.adequacy import assess, compute

    settings = {**asdict(RelearnSettings()), **section.get("settings", {})}
    grid = section["grid"]
    out = assess(
        grid,
        section["best"],
        settings["epochs"],
        settings["fit_t"],
        settings["fit_margin"],
        noise=settings["noise_facts"],
        alpha=settings["edge_alpha"],
    )
    for model, runs in grid.items():
        out[model]["compute"] = compute(runs)
    return out


@dataclass(frozen=True)
class AttackView:
    """What the report and the summary read of an RTT section (its layout stays in this module)."""

    chance: float
    acc_v: dict[str, tuple[float | None, float | None]]  # per model: V after RTT, mean and sd over V
    before: dict[str, float]  # per model: V before RTT, mean over V
    curves: dict[str, dict[float, dict[str, dict[int, float]]]]  # model → lr → "V"/"T" → epoch → mean
    adequacy: dict[str, dict]  # per model (forensics.attacks.adequacy.assess)
    rule: str  # the adequacy rule in words
    rounds: list[dict]  # the grid's rounds: lrs, epochs, who was adequate
    lrs: list[float]  # the last round's grid
    epochs: int | None
    batch_size: int | None


def view(results: dict, name: str = "relearn") -> AttackView | None:
    """RTT section `name` of a study's results as an AttackView (None when it did not run)."""
    rtt = results.get(name)
    if not rtt:
        return None
    metrics, best = rtt.get("metrics", {}), rtt.get("best", {})
    curves: dict = {}
    for model, runs in (rtt.get("grid") or {}).items():
        for r in runs:
            for e in r["epochs"]:
                for key, label in (("acc_v", "V"), ("acc_t", "T")):
                    if e.get(key) is not None:
                        at = curves.setdefault(model, {}).setdefault(r["lr"], {}).setdefault(label, {})
                        at.setdefault(e["epoch"], []).append(e[key])
    for per_lr in curves.values():
        for per_key in per_lr.values():
            for points in per_key.values():
                points.update({x: sum(ys) / len(ys) for x, ys in points.items()})
    grid = rtt.get("grid_run") or rtt.get("settings") or {}
    return AttackView(
        chance=rtt.get("chance", float("nan")),
        acc_v={m: (e["acc_v"]["mean"], e["acc_v"]["std"]) for m, e in metrics.items()},
        before={
            m: sum(b["before"] for b in per.values()) / len(per)
            for m, per in best.items()
            if per and all("before" in b for b in per.values())
        },
        curves={m: dict(sorted(c.items())) for m, c in curves.items()},
        adequacy=rtt.get("adequacy", {}),
        rule=rtt.get("adequacy_rule", ""),
        rounds=rtt.get("rounds", []),
        lrs=list(grid.get("lrs", [])),
        epochs=grid.get("epochs"),
        batch_size=rtt.get("settings", {}).get("batch_size"),
    )


# what report keys it reads (reports/schema.py), under its section
SCHEMA = (
    "metrics.*.acc_v.mean:num?",
    "metrics.*.acc_v.std:num?",
    "best.*.*.before:num",
    "chance:num",
    "?adequacy.*.?t_accuracy:num?",
    "?adequacy.*.?not_finite:str",
    "?adequacy.*.?compute.lrs:list",
    "?grid.*.[].lr:num",
    "?grid.*.[].epochs.[].epoch:int",
    "?rounds.[].lrs:list",
    "?rounds.[].adequate.*",
    *(f"?settings.{k}" for k in ("lrs", "epochs", "batch_size")),
)


# what full and LoRA RTT share on the `real` grid: a batch of 8, up to 6 epochs (T of 68 facts is 9 steps
# an epoch) with early stop; 2 seeds, since on SmolLM2 a cell's best V moved 0.02–0.15 between seeds
# against a facts' SE of 0.02–0.06 (README: the seed spread), so the interval must count them; the first
# forget split as V, and a second look (alpha / 2 at each) takes the other as V for the rows it left
# inconclusive: a row decided on 68 facts a side does not pay for 136. With a limit of 3 epochs NPO on
# SmolLM2's pretrained facts was cut off short of fitting T (0.82 at epoch 3, V rising)
REAL_RTT = {
    "epochs": 6,
    "batch_size": 8,
    "patience": 1,
    "score_retain": False,
    "seeds": (0, 1),
    "rotations": 1,
    "looks": 2,
}
# the demo's: up to 8 epochs with early stop on V (once T is fitted), one seed, V and T scored only
DEMO_RTT = {"epochs": 8, "patience": 1, "score_retain": False, "seeds": (0,)}
SHARES = {"scorer": "scorer", "seeds": "seeds"}  # the study's scorer and seeds

PRESETS = {
    # three learning rates; on the demo world GD's and RMU's best cells sit at the smallest beyond
    # chance, so the grid grows down to 3.3e-4 in a second round, where every model is adequate
    # (measured: 261 s for the whole demo, 16 runs per model)
    "demo": RelearnSettings(lrs=(1e-3, 3e-3, 1e-2), max_lr=3e-2, **DEMO_RTT),
    # a pretrained ~100M model on 2 CPU cores (`forensics real`): learning rates for its scale (at T = 68
    # facts, 3e-4 takes SmolLM2's original V from 1.00 to 0.68–0.97; 3e-3 is the cap), three of them: at
    # 1e-4, 3e-4, 9e-4 on the pretrained kind every model's best cell sat at 1e-4 and the grid grew down
    # to 3.3e-5 in a second round (19 of its 72 minutes), while no model's best was at 9e-4, the runs
    # that fit T slowest
    "real": RelearnSettings(lrs=(3e-5, 1e-4, 3e-4), max_lr=3e-3, **REAL_RTT),
    # the paper's grid on a pretrained ~100M model (a GPU's job: bench/gpu_check.sh): learning rates on
    # a log range, 6 epochs, 3 seeds, 2 rotations
    "paper": RelearnSettings(lrs=(3e-5, 1e-4, 3e-4, 1e-3), epochs=6, batch_size=8, max_lr=3e-3, rotations=2),
}


def cells(results: dict, model: str) -> dict:
    """RTT's figures in a method's summary row: V after RTT, its recovery, the never-learned control's V."""
    metrics = results.get("relearn", {}).get("metrics", {})  # not the whole view: once per method
    if model not in metrics:
        return {}
    out = {"rtt_acc_v": metrics[model]["acc_v"]["mean"], "rtt_recovery": metrics[model]["recovery"]["mean"]}
    if "recovery_max" in metrics[model]:  # the paper's figure: the best cell chosen on V itself
        out["rtt_recovery_max"] = metrics[model]["recovery_max"]["mean"]
    if "seed_spread" in metrics[model]:  # the attack's randomness beside what the facts alone give
        out["rtt_seed_spread"] = spread_text(metrics[model]["seed_spread"])
    if "never_learned" in metrics:
        out["rtt_control"] = metrics["never_learned"]["acc_v"]["mean"]
    return out


def spread_text(spread: dict) -> str:
    """The seed spread in a cell: "sd 0.03 over 2 seeds (facts' SE 0.04)"; one seed: not measured."""
    se = f" (facts' SE {spread['facts_se']:.2f})" if spread.get("facts_se") is not None else ""
    if spread.get("sd") is None:
        return f"one seed: not measured{se}"
    return f"sd {spread['sd']:.2f} over {len(spread['acc_v'])} seeds{se}"


COLUMNS = {
    "RTT acc V": "rtt_acc_v",
    "RTT control": "rtt_control",
    "RTT recovery": "rtt_recovery",
    "RTT recovery, best cell on V (paper)": "rtt_recovery_max",
    "RTT seed spread": "rtt_seed_spread",
}


def attack(name: str, label: str, folder: str | None, presets: dict, default: bool = True):
    """The lens of an RTT section `name` (outcomes under `label`), its runs under OUT/`folder`, its
    settings per grid `presets`."""

    def run(ctx: Context) -> dict:
        from forensics.attacks.relearn import relearn

        out = ctx.out / folder if folder else ctx.out
        skipped = ctx.failed  # no verdict reads an attack on them: the run's most costly part spared
        section = relearn(
            {n: p for n, p in ctx.models.items() if n not in skipped},
            ctx.sets,
            out,
            ctx.settings(name),
            progress=ctx.progress,
            runtime=ctx.runtime,
            executor=ctx.cfg.jobs(),
        )
        return {**section, "skipped": skipped} if skipped else section

    def outcomes(results: dict, model: str) -> Outcomes:
        section = results.get(name, {})
        best = section.get("best", {}).get(model)
        field = "v_cross" if crossed(section) else "v_correct"
        rows = rtt_rows(best, results["facts"]["splits"], "seeds", field, "v_correct")
        return {} if rows is None else {Reading(label): (rows, v_facts(results, best))}

    def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
        section = results.get(name, {})
        field = "c_cross" if crossed(section) else "c_correct"
        best = section.get("best", {}).get(model)
        rows = rtt_rows(best, results["facts"]["splits"], "control", field, "c_correct")
        return {} if rows is None else {Reading(label): rows}

    def adequacy(results: dict, model: str) -> dict[str, dict]:
        section = results.get(name, {})
        if "adequacy" not in section and section.get("grid"):  # written before adequacy was judged
            section = {**section, "adequacy": judged(section)}
        found = section.get("adequacy", {}).get(model)
        return {label: found} if found else {}

    return Lens(
        name=name,
        kind=INFORMATION,
        run=run,
        settings=RelearnSettings,
        default=default,
        outcomes=outcomes,
        control_outcomes=control_outcomes,
        adequacy=adequacy,
        presets=presets,
        shares=SHARES,
        skips_failed=True,
        **({"cells": cells, "columns": COLUMNS, "schema": SCHEMA} if name == "relearn" else {}),
    )


LABEL = "RTT"  # its readings' label (the summary's, the report's)
LENS = attack("relearn", LABEL, None, PRESETS)
