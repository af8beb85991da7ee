"""RTT's selection and metrics (docs/design.md §1): the attacker's best case per model and V, chosen on V
(and on the control facts alike), and the paper's recovery figures; reads runs, loads no model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from forensics.errors import InputError
from forensics.facts.core import Sets

REFERENCE, CONTROL = "original", "never_learned"


def score_chance(sets: Sets) -> float:
    return float(np.mean([1.0 / len(f.choices) for f in sets.forget_facts()]))


def best_per_v(grid: Mapping[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """Per model and V: for each seed the (lr, epoch) with the highest V accuracy (first on ties), and
    their mean; `seeds` keeps each seed's choice with its per-fact outcomes on V. Where control facts
    were scored beside V, `control` holds per seed the epoch best on them (chosen alike: the same
    attacker's best case) with their per-fact outcomes."""
    chosen: dict[str, dict[str, dict[int, dict]]] = {}
    control: dict[str, dict[str, dict[int, dict]]] = {}
    for name, runs in grid.items():
        per_v = chosen.setdefault(name, {})
        for run in runs:
            seed = run.get("seed", 0)
            for e in run["epochs"]:
                current = per_v.setdefault(run["v"], {}).get(seed)
                if current is None or e["acc_v"] > current["acc_v"]:
                    per_v[run["v"]][seed] = {
                        "seed": seed,
                        "lr": run["lr"],
                        "epoch": e["epoch"],
                        "acc_v": e["acc_v"],
                        "acc_t": e.get("acc_t"),
                        "retain": e.get("retain"),
                        "before": run["before"]["acc_v"],
                        "v_correct": e.get("v_correct"),
                    }
                if "acc_c" in e:  # the control's best epoch, chosen on the control alike
                    current = control.setdefault(name, {}).setdefault(run["v"], {}).get(seed)
                    if current is None or e["acc_c"] > current["acc_c"]:
                        control[name][run["v"]][seed] = {"acc_c": e["acc_c"], "c_correct": e["c_correct"]}
    best: dict[str, dict[str, dict]] = {}
    for name, per_v in chosen.items():
        best[name] = {}
        for v, by_seed in per_v.items():
            seeds = [by_seed[s] for s in sorted(by_seed)]
            first = seeds[0]

            def mean(k, seeds=seeds):
                values = [c[k] for c in seeds if c[k] is not None]
                return float(np.mean(values)) if values else None

            best[name][v] = {
                "lr": first["lr"],
                "epoch": first["epoch"],
                "acc_v": mean("acc_v"),
                "acc_t": mean("acc_t"),
                "retain": mean("retain"),
                "before": first["before"],
                "seeds": seeds,
            }
            theirs = control.get(name, {}).get(v)
            if theirs:  # per seed, the best epoch on the control facts beside V
                best[name][v]["control"] = [theirs[s] for s in sorted(theirs)]
                best[name][v]["acc_c"] = float(np.mean([c["acc_c"] for c in best[name][v]["control"]]))
    return best


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_v": values}


def rtt_metrics(best: Mapping[str, Mapping[str, dict]], chance: float) -> dict[str, dict]:
    """recovery, recovery_above_chance and hidden per model (docs/design.md §1), mean and spread over V.

    recovery = acc_V(model+RTT) / acc_V(original+RTT); recovery_above_chance subtracts chance from
    both; hidden = acc_V(model+RTT) - acc_V(never_learned+RTT), when the control exists.
    """
    if REFERENCE not in best:
        raise InputError("RTT metrics need the original model's run (the reference)")
    out: dict[str, dict] = {}
    for name, per_v in best.items():
        vs = list(per_v)
        acc = [per_v[v]["acc_v"] for v in vs]
        ref = [best[REFERENCE][v]["acc_v"] for v in vs]
        entry = {
            "acc_v": _summary(acc),
            "recovery": _summary([a / r if r else float("nan") for a, r in zip(acc, ref, strict=True)]),
            "recovery_above_chance": _summary(
                [
                    (a - chance) / (r - chance) if r != chance else float("nan")
                    for a, r in zip(acc, ref, strict=True)
                ]
            ),
        }
        if CONTROL in best:
            entry["hidden"] = _summary([a - best[CONTROL][v]["acc_v"] for a, v in zip(acc, vs, strict=True)])
        out[name] = entry
    return out
