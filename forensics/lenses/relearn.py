"""The relearning attack (RTT, Deeb & Roger 2024): fine-tune on T, score V, per rotation and seed;
the paper's test of hidden versus erased."""

from __future__ import annotations

import numpy as np

from forensics.attacks.relearn import RelearnSettings
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, everything
from forensics.outcomes import unbits


def rtt_rows(best: dict | None, splits: list[str], key: str, field: str) -> np.ndarray | None:
    """[seeds, facts] per-fact outcomes of an RTT section's best runs, V splits in forget order."""
    if not best:
        return None
    vs = list(dict.fromkeys(splits))
    if not all(v in best and best[v].get(key) for v in vs):
        return None
    n_seeds = min(len(best[v][key]) for v in vs)
    return np.stack([unbits("".join(best[v][key][i][field] for v in vs)) for i in range(n_seeds)])


def attack(name: str, label: str, folder: str | None, default: bool = True):
    """The lens of an RTT section `name` (outcomes under `label`), its runs under OUT/`folder`."""

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
        rows = rtt_rows(
            results.get(name, {}).get("best", {}).get(model), results["facts"]["splits"], "seeds", "v_correct"
        )
        return {} if rows is None else {label: (rows, everything(results))}

    def control_outcomes(results: dict, model: str) -> dict[str, np.ndarray]:
        rows = rtt_rows(
            results.get(name, {}).get("best", {}).get(model),
            results["facts"]["splits"],
            "control",
            "c_correct",
        )
        return {} if rows is None else {label: rows}

    return Lens(name, INFORMATION, run, RelearnSettings, default, outcomes, control_outcomes)


LENS = attack("relearn", "RTT", None)
