"""Verdicts and their statistics (docs/design.md §9): method − control on the same facts, with intervals.

Each information lens yields per-fact 0/1 outcomes ([seeds, facts], facts in forget order, each fact's
stratum its V split) for the method and for the exact-unlearning control (or chance, when there is no
control: the verdict then says "uncontrolled"; or, where no never-learned model can exist, the same
model's outcomes on facts the original does not know, bootstrapped independently). The difference of
means is bootstrapped in pairs —
facts resampled within their stratum, seeds resampled, the same draws for method and control — which
gives an interval for every figure and keeps the comparison paired. Three outcomes:

- *hidden*: some lens's one-sided lower bound of (method − control) exceeds `min_effect`, after Holm
  correction across the lenses (and layers) tested;
- *erased within ±margin*: every lens's 90% interval (two one-sided tests at 5%) lies inside ±margin;
- *inconclusive* otherwise, naming the lens closest to settling it and about how many facts would.

No model is loaded here: this module reads outcomes and returns numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from forensics.errors import InputError
from forensics.outcomes import Reading, bootstrap_means, with_ci


@dataclass(frozen=True)
class VerdictSettings:
    """The thresholds of the three outcomes and the bootstrap's size."""

    min_effect: float = 0.05
    margin: float = 0.10
    alpha: float = 0.05
    n_boot: int = 2000
    seed: int = 0
    precision: float = 0.12  # a figure's 95% half-width to reach; a wider one says how many facts would

    def __post_init__(self):
        if not 0 <= self.min_effect < 1:
            raise InputError(f"'min_effect' must be in 0..1 (got {self.min_effect})")
        if not 0 < self.margin < 1:
            raise InputError(f"'margin' must be in (0, 1) (got {self.margin})")
        if not 0 < self.alpha < 0.5:
            raise InputError(f"'alpha' must be in (0, 0.5) (got {self.alpha})")
        if not 0 < self.precision < 1:
            raise InputError(f"'precision' must be in (0, 1) (got {self.precision})")
        if self.n_boot < 100:
            raise InputError(f"'n_boot' must be at least 100 (got {self.n_boot})")


def paired_bootstrap(
    method: np.ndarray, control: np.ndarray, strata: Sequence, n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """[n_boot] bootstrap draws of mean(method) − mean(control), both [seeds, facts] and drawn alike
    (`bootstrap_means`); a one-seed control is repeated against a many-seed method."""
    method, control = np.atleast_2d(method), np.atleast_2d(control)
    if control.shape[0] == 1 and method.shape[0] > 1:
        control = np.repeat(control, method.shape[0], axis=0)
    if method.shape != control.shape:
        raise ValueError(f"method {method.shape} and control {control.shape} are not paired")
    mine, theirs = bootstrap_means([method, control], strata, n_boot, seed)
    return mine - theirs


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level `alpha`."""
    order = np.argsort(p_values, kind="stable")
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def independent_bootstrap(
    method: np.ndarray,
    strata: Sequence,
    control: np.ndarray,
    control_strata: Sequence,
    n_boot: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """[n_boot] bootstrap draws of mean(method) − mean(control) when the two are measured on different
    facts (a control of facts the original does not know): each resampled on its own, within its
    strata, with independent draws."""
    mine = bootstrap_means([method], strata, n_boot, seed)[0]
    theirs = bootstrap_means([control], control_strata, n_boot, seed + 1)[0]
    return mine - theirs


def comparison_draws(
    method: np.ndarray,
    control: np.ndarray,
    strata: Sequence,
    control_strata: Sequence | None,
    n_boot: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Draws of mean(method) − mean(control): paired on the same facts, or independent when the
    control was measured on facts of its own (`control_strata` given)."""
    if control_strata is None:
        return paired_bootstrap(method, control, strata, n_boot, seed)
    return independent_bootstrap(method, strata, control, control_strata, n_boot, seed)


def evidence(
    method: np.ndarray,
    control: np.ndarray,
    strata: Sequence,
    control_strata: Sequence | None,
    settings: VerdictSettings,
) -> dict:
    """Difference of means, its 95% and 90% intervals, and the bootstrap p-value of
    difference ≤ min_effect (small when the method clearly keeps more than the control)."""
    method, control = np.atleast_2d(method), np.atleast_2d(control)
    draws = comparison_draws(method, control, strata, control_strata, settings.n_boot, settings.seed)
    diff = float(method.mean() - control.mean())
    lo95, hi95 = np.quantile(draws, [0.025, 0.975])
    lo90, hi90 = np.quantile(draws, [settings.alpha, 1 - settings.alpha])
    p = (1 + int((draws <= settings.min_effect).sum())) / (len(draws) + 1)
    return {
        "diff": diff,
        "ci95": [float(lo95), float(hi95)],
        "ci90": [float(lo90), float(hi90)],
        "p_hidden": p,
        "method": float(method.mean()),
        "control": float(control.mean()),
        "facts": method.shape[1],
        "seeds": method.shape[0],
    }


def facts_to_settle(e: Mapping, settings: VerdictSettings) -> int | None:
    """About how many facts would settle an undecided lens: the interval's half-width shrinks as
    1/√n, so n grows until the lower bound clears min_effect (if the difference exceeds it) or the
    90% interval fits inside ±margin (if the difference is within it). None when neither can happen."""
    half = (e["ci90"][1] - e["ci90"][0]) / 2
    room = max(e["diff"] - settings.min_effect, settings.margin - abs(e["diff"]))
    if room <= 0 or half <= 0:
        return None
    return max(e["facts"] + 1, math.ceil(e["facts"] * (half / room) ** 2))


def facts_for_precision(ci95: Sequence[float] | None, facts: int, settings: VerdictSettings) -> int | None:
    """About how many facts a side would bring a 95% interval over `facts` facts to a half-width of
    `settings.precision` (it shrinks as 1/√n); None when it is already that narrow or not measured."""
    if not ci95:
        return None
    half = (ci95[1] - ci95[0]) / 2
    return math.ceil(facts * (half / settings.precision) ** 2) if half > settings.precision else None


def decide(lenses: Mapping[Reading, dict], settings: VerdictSettings, controlled: bool) -> dict:
    """The verdict over every information lens's evidence (`evidence` dicts by reading)."""
    if not lenses:
        return {"verdict": "unknown", "deciding": None, "text": "no information lens measured per fact"}
    names = list(lenses)
    rejected = holm([lenses[n]["p_hidden"] for n in names], settings.alpha)
    suffix = "" if controlled else " (uncontrolled: against chance, no never-learned control)"
    if any(rejected):
        hits = [n for n, r in zip(names, rejected, strict=True) if r]
        deciding = max(hits, key=lambda n: lenses[n]["ci90"][0])
        return {"verdict": "hidden", "deciding": deciding, "lenses": hits, "suffix": suffix}
    if all(-settings.margin < lenses[n]["ci90"][0] and lenses[n]["ci90"][1] < settings.margin for n in names):
        widest = max(names, key=lambda n: max(abs(x) for x in lenses[n]["ci90"]))
        return {"verdict": f"erased within ±{settings.margin:g}", "deciding": widest, "suffix": suffix}
    needs = {n: facts_to_settle(lenses[n], settings) for n in names}
    open_ = [
        n
        for n in names
        if not (-settings.margin < lenses[n]["ci90"][0] and lenses[n]["ci90"][1] < settings.margin)
    ]
    deciding = min(open_, key=lambda n: needs[n] if needs[n] is not None else math.inf)
    return {
        "verdict": "inconclusive",
        "deciding": deciding,
        "facts_needed": needs[deciding],
        "suffix": suffix,
    }


def describe(name: str, e: Mapping) -> str:
    """One lens's evidence in words: the method, the control and the difference with its interval."""
    interval = with_ci(e["diff"], *e["ci95"], label="95% CI ")
    return f"{name}: {e['method']:.2f} vs {e['control']:.2f}, difference {interval}"
