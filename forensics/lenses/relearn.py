"""The relearning attack (RTT, Deeb & Roger 2024): fine-tune on T, score V, per rotation and seed;
the paper's test of hidden versus erased."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from forensics.attacks.relearn import RelearnSettings
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes
from forensics.outcomes import Reading, unbits


def rtt_rows(best: dict | None, splits: list[str], key: str, field: str) -> np.ndarray | None:
    """[seeds, facts] per-fact outcomes of an RTT section's best runs, over the splits it took as V
    (in forget order; every forget split unless the grid rotates over fewer)."""
    if not best:
        return None
    vs = [v for v in dict.fromkeys(splits) if v in best]
    if not vs or not all(best[v].get(key) for v in vs):
        return None
    n_seeds = min(len(best[v][key]) for v in vs)
    return np.stack([unbits("".join(best[v][key][i][field] for v in vs)) for i in range(n_seeds)])


def v_facts(results: dict, best: dict) -> list[int]:
    """The indices of the forget facts in the splits RTT took as V."""
    return [i for i, s in enumerate(results["facts"]["splits"]) if s in best]


def judged(section: dict) -> dict[str, dict]:
    """The adequacy of an RTT section written before adequacy was judged, from its stored grid (its
    runs scored no T when `score_t_and_retain` was off: then `fitted` is None, not measured)."""
    from forensics.attacks.adequacy import assess, compute

    settings = {**asdict(RelearnSettings()), **section.get("settings", {})}
    grid = section["grid"]
    out = assess(grid, section["best"], settings["epochs"], settings["fit_t"], settings["fit_margin"])
    for model, runs in grid.items():
        out[model]["compute"] = compute(runs)
    return out


# what full and LoRA RTT share on the `real` grid: a batch of 8, up to 3 epochs (T of 72 facts is 9 steps
# an epoch), early stop, one seed, 2 rotations of V as the paper's code
REAL_RTT = {"epochs": 3, "batch_size": 8, "patience": 1, "score_retain": False, "seeds": (0,), "rotations": 2}
# the demo's: up to 8 epochs with early stop on V (once T is fitted), one seed, V and T scored only
DEMO_RTT = {"epochs": 8, "patience": 1, "score_retain": False, "seeds": (0,)}
SHARES = {"scorer": "scorer", "seeds": "seeds"}  # the study's scorer and seeds

PRESETS = {
    # three learning rates, which every model of the demo passes adequacy on at the first round
    # (measured: 59 s for 7 models)
    "demo": RelearnSettings(lrs=(1e-3, 3e-3, 1e-2), max_lr=3e-2, **DEMO_RTT),
    # a pretrained ~100M model on 2 CPU cores (`forensics real`): learning rates for its scale (at T = 72
    # facts, 3e-4 already takes SmolLM2's original V from 1.00 to 0.79 in an epoch; 3e-3 is the cap),
    # grown by the adequacy rounds
    "real": RelearnSettings(lrs=(1e-4, 3e-4), max_lr=3e-3, **REAL_RTT),
    # the paper's grid on a pretrained ~100M model (a GPU's job: bench/gpu_check.sh): learning rates on
    # a log range, 6 epochs, 3 seeds, 2 rotations
    "paper": RelearnSettings(lrs=(3e-5, 1e-4, 3e-4, 1e-3), epochs=6, batch_size=8, max_lr=3e-3, rotations=2),
}


def attack(name: str, label: str, folder: str | None, presets: dict, default: bool = True):
    """The lens of an RTT section `name` (outcomes under `label`), its runs under OUT/`folder`, its
    settings per grid `presets`."""

    def run(ctx: Context) -> dict:
        from forensics.attacks.relearn import relearn

        out = ctx.out / folder if folder else ctx.out
        return relearn(
            ctx.models,
            ctx.sets,
            out,
            ctx.settings(name),
            progress=ctx.progress,
            runtime=ctx.runtime,
            executor=ctx.cfg.jobs(),
        )

    def outcomes(results: dict, model: str) -> Outcomes:
        best = results.get(name, {}).get("best", {}).get(model)
        rows = rtt_rows(best, results["facts"]["splits"], "seeds", "v_correct")
        return {} if rows is None else {Reading(label): (rows, v_facts(results, best))}

    def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
        rows = rtt_rows(
            results.get(name, {}).get("best", {}).get(model),
            results["facts"]["splits"],
            "control",
            "c_correct",
        )
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
    )


LENS = attack("relearn", "RTT", None, PRESETS)
