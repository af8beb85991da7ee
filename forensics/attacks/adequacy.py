"""Attack adequacy (docs/design.md §13): did RTT try hard enough for what it failed to bring back to
mean anything?

Per model, from its grid of runs (T scored after every epoch):

- *fitted*: the attack fits T. Its best T accuracy over the grid (per V and seed, then the mean) is at
  least `fit_t`, or — for any model but the original — within `fit_margin` of the original's; never
  when every run's loss stopped being finite (`not_finite`: the dtype, e.g. float16 on CPU);
- *saturated*: for every V and seed, the run chosen on V is not at the largest learning rate tried
  (a larger one might recover more), nor at the smallest (a smaller one might: a pretrained model's
  knowledge is perturbed by rates a micro world needs), and was not cut off by the epoch limit while
  V still rose —
  "at the edge" meaning it gains there more than `noise` V facts (one, by default: a fact's flip is
  what chance does) over the smaller learning rates, or over its run's earlier epochs (ties go to the
  earliest run and epoch), and more than chance flips explain: a one-sided sign test on the V facts
  that changed between the two, p < `alpha` (V of 24 facts at chance flips several facts between any
  two epochs; a fixed count of one fact read that as a trend); a V answered perfectly is saturated
  wherever it was reached;
- its compute: runs, optimizer steps, examples seen, learning rates and epochs tried, seconds.

`extended` grows the grid where the runs point while some model's attack is not adequate — the
largest learning rate ×3 (best at the top, or T not fitted and no longer rising), the smallest ÷3 (best
at the bottom), the epochs ×2 (cut off, or T not fitted and still rising at the limit) — and the same
grid runs on every model; not for a model whose loss is not finite: no rate or length trains it.
No model is loaded here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

LR_STEP, EPOCH_STEP = 3.0, 2
REFERENCE = "original"
EDGE_ALPHA = 0.05  # the sign test's level for a gain at the grid's edge


def _t_best(runs: Sequence[dict]) -> float | None:
    """The mean over (V, seed) of the best T accuracy any run and epoch of that V and seed reached."""
    best: dict[tuple, float] = {}
    for run in runs:
        for e in run["epochs"]:
            if e.get("acc_t") is not None:
                at = (run["v"], run.get("seed", 0))
                best[at] = max(best.get(at, 0.0), e["acc_t"])
    return float(np.mean(list(best.values()))) if best else None


def compute(runs: Sequence[dict]) -> dict:
    """What a model's attack spent: runs, optimizer steps, examples seen, the learning rates and epoch
    limits tried, seconds; a run carried over to a longer limit (`same_as`) is counted once."""
    ran = [r for r in runs if "same_as" not in r]
    return {
        "runs": len(ran),
        "steps": int(sum(r.get("steps", 0) for r in ran)),
        "examples": int(sum(r.get("examples", 0) for r in ran)),
        "lrs": sorted({r["lr"] for r in runs}),
        "epochs": sorted({r["epoch_limit"] for r in runs if "epoch_limit" in r}),
        "seconds": round(float(sum(r.get("seconds", 0.0) for r in ran)), 1),
    }


def _best_cell(cells: Sequence[dict], fallback: float) -> tuple[float, str | None]:
    """The best V accuracy among `cells` (the first on ties) with its per-fact outcomes, or
    `fallback` (V before the attack, no outcomes) when there are none."""
    if not cells:
        return fallback, None
    top = max(cells, key=lambda e: e["acc_v"])
    return top["acc_v"], top.get("v_correct")


def _gains(runs: Sequence[dict], choice: dict, top: float, limit: int, bottom: float) -> tuple[tuple, ...]:
    """What the choice on V gains (i) at the top learning rate over the best of the smaller ones (or
    over V before the attack, with one learning rate), (ii) at the epoch limit over its run's earlier
    epochs and (iii) at the smallest learning rate over the best of the larger ones (with more than
    one), each with the compared cell's per-fact outcomes; (0, None) where the choice is not at that
    edge. A step, not a window: a rise within chance per epoch or learning rate passes, however long
    it goes on. (iii) counts only a choice above V before the attack, where a smaller rate could
    still find more."""
    mine = [r for r in runs if r["v"] == choice["v"] and r.get("seed", 0) == choice["seed"]]
    at_top: tuple = (0.0, None)
    if choice["lr"] >= top:
        acc, bits = _best_cell([e for r in mine if r["lr"] < top for e in r["epochs"]], choice["before"])
        at_top = (choice["acc_v"] - acc, bits)
    at_bottom: tuple = (0.0, None)
    larger = [e for r in mine if r["lr"] > bottom for e in r["epochs"]]
    # a smaller rate tends to the model untouched: a choice no better than V before the attack (the
    # original, which knows V) has nothing below it to find
    if choice["lr"] <= bottom and larger and choice["acc_v"] > choice["before"]:
        acc, bits = _best_cell(larger, choice["before"])
        at_bottom = (choice["acc_v"] - acc, bits)
    at_limit: tuple = (0.0, None)
    if choice["epoch"] >= limit:
        run = next(r for r in mine if r["lr"] == choice["lr"])
        earlier = [e for e in run["epochs"] if e["epoch"] < choice["epoch"]]
        acc, bits = _best_cell(earlier, choice["before"])
        at_limit = (choice["acc_v"] - acc, bits)
    return at_top, at_limit, at_bottom


def _t_rising(runs: Sequence[dict], limit: int) -> bool:
    """Whether T still rose at the epoch limit in the run that fitted it best: more epochs may fit it
    where a larger learning rate need not."""
    scored = [r for r in runs if any(e.get("acc_t") is not None for e in r["epochs"])]
    if not scored:
        return False
    run = max(scored, key=lambda r: max(e.get("acc_t") or 0.0 for e in r["epochs"]))
    t = [e.get("acc_t") or 0.0 for e in run["epochs"]]
    return run["epochs"][-1]["epoch"] >= limit and len(t) > 1 and t[-1] > max(t[:-1])


def sign_p(mine: str, other: str) -> float:
    """One-sided exact sign test: the chance of at least this many facts gained among those that
    changed between two cells' per-fact outcomes (0/1 strings), were each change a coin flip."""
    up = sum(a == "1" and b == "0" for a, b in zip(mine, other, strict=True))
    n = up + sum(a == "0" and b == "1" for a, b in zip(mine, other, strict=True))
    return sum(math.comb(n, k) for k in range(up, n + 1)) / 2**n


def _a_trend(gain: tuple, mine: str | None, size: int, noise: int, alpha: float | None) -> bool:
    """A gain at the grid's edge that is more than chance: over `noise` facts and, where both cells'
    per-fact outcomes are known, significant by the sign test at `alpha` (None: the count alone)."""
    value, other = gain
    if value * size <= noise + 1e-9:
        return False
    if alpha is None or not mine or not other or len(mine) != len(other):
        return True
    return sign_p(mine, other) < alpha


def assess(
    grid: Mapping[str, Sequence[dict]],
    best: Mapping[str, Mapping[str, dict]],
    epochs: int,
    fit_t: float,
    fit_margin: float,
    noise: int = 1,
    alpha: float | None = EDGE_ALPHA,
) -> dict[str, dict]:
    """Per model: fitted, saturated (with how often the choice sat at the top learning rate or at the
    epoch limit, gaining there more than `noise` V facts and more than chance at `alpha`), adequate,
    `not_finite` (the dtype where every run stopped on a loss that is not finite, else None);
    `grid` is the final round's runs, `best` their choice on V (`selection.best_per_v`)."""
    top = max(r["lr"] for runs in grid.values() for r in runs)
    bottom = min(r["lr"] for runs in grid.values() for r in runs)
    reference = _t_best(grid.get(REFERENCE, ()))
    out = {}
    for name, runs in grid.items():
        at_top = at_bottom = cut_off = choices = 0
        for v, per_v in best.get(name, {}).items():
            for c in per_v["seeds"]:
                choices += 1
                if c["acc_v"] >= 1.0:
                    continue  # nothing left to recover
                gain_top, gain_limit, gain_bottom = _gains(runs, {**c, "v": v}, top, epochs, bottom)
                mine = c.get("v_correct")
                size = len(mine or "") or 1
                at_top += _a_trend(gain_top, mine, size, noise, alpha)
                cut_off += _a_trend(gain_limit, mine, size, noise, alpha)
                at_bottom += _a_trend(gain_bottom, mine, size, noise, alpha)
        t = _t_best(runs)
        stopped = [r["diverged"]["dtype"] for r in runs if "diverged" in r]
        not_finite = stopped[0] if runs and len(stopped) == len(runs) else None
        if not_finite:
            fitted = False  # what it scored after its loss stopped being finite means nothing
        elif t is None:
            fitted = None  # T was not scored (a run from before adequacy was measured)
        else:
            near = name != REFERENCE and reference is not None and t >= reference - fit_margin
            fitted = bool(t >= fit_t or near)
        saturated = not at_top and not at_bottom and not cut_off
        out[name] = {
            "fitted": fitted,
            "t_accuracy": t,
            "t_rising": not fitted and _t_rising(runs, epochs),
            "saturated": saturated,
            "at_top_lr": int(at_top),
            "at_bottom_lr": int(at_bottom),
            "at_epoch_limit": int(cut_off),
            "choices": choices,
            "adequate": bool(fitted) and saturated,
            "fit_t": fit_t,
            "not_finite": not_finite,
        }
    return out


def rule(fit_t: float, fit_margin: float, noise: int = 1, alpha: float | None = EDGE_ALPHA) -> str:
    """The adequacy rule in words, as results.json records it."""
    chance = (
        f", or no more than chance flips explain (one-sided sign test on the changed V facts, p ≥ {alpha:g})"
        if alpha is not None
        else ""
    )
    return (
        f"fitted: the best T accuracy over the grid (mean over V and seeds) ≥ {fit_t:g}, or within "
        f"{fit_margin:g} of the original's; saturated: for every V and seed the run best on V gains, at the "
        "largest learning rate tried over the smaller ones, at the smallest over the larger ones and at the "
        "epoch limit over its earlier epochs, "
        f"no more than {noise} V fact(s){chance} (V answered perfectly excepted)"
    )


def extended(settings, adequacy: Mapping[str, dict], max_lr: float):
    """The next round's RTT settings while some model's attack is not adequate, or None when every
    one is adequate or nothing may grow (the learning rate cap reached, nothing cut off). A model
    whose loss is not finite asks for nothing: no learning rate or epoch limit trains it."""
    weak = [a for a in adequacy.values() if not a["adequate"] and not a.get("not_finite")]
    if not weak:
        return None
    # where the runs point: a better V at the top rate, or T not fitted and no longer rising → a larger
    # rate; at the smallest rate → a smaller one; V or T still rising at the epoch limit → longer runs
    need_lr = any(a["at_top_lr"] or (not a["fitted"] and not a.get("t_rising")) for a in weak)
    need_lower = any(a.get("at_bottom_lr") for a in weak)
    need_epochs = any(a["at_epoch_limit"] or (not a["fitted"] and a.get("t_rising")) for a in weak)
    lr = max(settings.lrs) * LR_STEP
    lrs = tuple(sorted({*settings.lrs, lr})) if need_lr and lr <= max_lr * (1 + 1e-9) else settings.lrs
    if need_lr and lrs == settings.lrs:  # the cap is reached: train longer instead
        need_epochs = True
    if need_lower:
        lrs = tuple(sorted({*lrs, float(f"{min(settings.lrs) / LR_STEP:.6g}")}))
    epochs = settings.epochs * EPOCH_STEP if need_epochs else settings.epochs
    if lrs == settings.lrs and epochs == settings.epochs:
        return None
    return replace(settings, lrs=lrs, epochs=epochs)


def words(a: Mapping | None) -> str:
    """A model's attack adequacy in a few words (tables): adequate, or what it lacks, and its steps."""
    if not a:
        return "–"
    lacks = []
    if a.get("not_finite"):
        lacks.append(f"cannot fit T: {why_unfit(a)}")
    elif a.get("fitted") is False:
        lacks.append(f"T not fitted ({a['t_accuracy']:.2f})")
    if a.get("at_top_lr"):
        lacks.append(f"best at the top lr in {a['at_top_lr']}/{a['choices']}")
    if a.get("at_bottom_lr"):
        lacks.append(f"best at the smallest lr in {a['at_bottom_lr']}/{a['choices']}")
    if a.get("at_epoch_limit"):
        lacks.append(f"cut off in {a['at_epoch_limit']}/{a['choices']}")
    state = "adequate" if a.get("adequate") else "; ".join(lacks) or "not adequate"
    steps = a.get("compute", {}).get("steps")
    return f"{state} ({steps} steps)" if steps is not None else state


def why_unfit(a: Mapping) -> str:
    """Why an attack did not fit T, in words: its loss stopped being finite, or its best T accuracy."""
    if a.get("not_finite"):
        return f"the loss is not finite in {a['not_finite']}"
    return f"its best T accuracy over the grid is {a['t_accuracy']:.2f}, below {a.get('fit_t', 0.9):g}"


def compute_words(a: Mapping, seconds: bool = True) -> str:
    """An attack's compute in words: learning rates × epoch limits, runs, steps (and seconds: not in
    the words results.json keeps, which the same seed must reproduce)."""
    c = a.get("compute") or {}
    lrs = ", ".join(f"{lr:g}" for lr in c.get("lrs", []))
    epochs = "/".join(str(e) for e in c.get("epochs", []))
    spent = f"{c.get('runs')} runs, {c.get('steps')} steps" + (f", {c.get('seconds')} s" if seconds else "")
    return f"lr {lrs} × up to {epochs} epochs: {spent}"


def rounds_words(rounds: Sequence[Mapping]) -> str:
    """The grid's rounds in words: each one's learning rates × epochs, and the models whose attack was
    not adequate after it (the next round's reason)."""
    parts = []
    for r in rounds:
        lrs = ", ".join(f"{lr:g}" for lr in r["lrs"])
        weak = [n for n, ok in r["adequate"].items() if not ok]
        lacking = f" (not adequate: {', '.join(weak)})" if weak else ""
        parts.append(f"lr {lrs} × {r['epochs']} epochs{lacking}")
    return "; ".join(parts)
