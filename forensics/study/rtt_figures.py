"""RTT's headline figures beside the verdict (docs/design.md §1, §9): recovery with its interval, the
paper's ~0.88 against it, and how many facts the intervals would need to reach the precision asked."""

from __future__ import annotations

import numpy as np

from forensics.attacks.selection import REFERENCE, against_paper
from forensics.lenses import REGISTRY
from forensics.lenses.relearn import LABEL as RTT_LABEL
from forensics.lenses.relearn import rtt_rows, v_facts
from forensics.outcomes import Reading, bootstrap_means
from forensics.study.readings import on
from forensics.study.verdict import VerdictSettings, facts_for_precision

RTT = Reading(RTT_LABEL)


def recovery(results: dict, name: str, settings: VerdictSettings) -> dict | None:
    """acc_V(method + RTT) ÷ acc_V(original + RTT) with its 95% interval (facts and seeds resampled
    alike for both), and the same at the best cell chosen on V (`max`, the paper's way) with where the
    paper's ~0.88 lies against it (`paper`); None when RTT did not run on both."""
    lens = REGISTRY["relearn"].outcomes  # RTT's alone, not every lens's
    mine, ref = lens(results, name).get(RTT), lens(results, REFERENCE).get(RTT)
    theirs = None if mine is None or ref is None else on(ref, mine[1])
    if theirs is None:
        return None
    out = ratio(mine[0], theirs, np.array(results["facts"]["splits"])[mine[1]], settings)
    # the paper's 88% is read at the best cell chosen on V itself: like for like, so is its comparison
    best, splits = results.get("relearn", {}).get("best", {}), results["facts"]["splits"]
    top = {m: rtt_rows(best.get(m), splits, "seeds", "v_correct", "v_correct") for m in (name, REFERENCE)}
    if all(t is not None for t in top.values()):
        ref_top = on((top[REFERENCE], v_facts(results, best[REFERENCE])), mine[1])
        if ref_top is not None:
            paper = ratio(top[name], ref_top, np.array(splits)[mine[1]], settings)
            out["max"] = paper
            out["paper"] = against_paper(paper["ci95"])  # the paper's ~0.88 below, within or above it
    return out


def ratio(method: np.ndarray, original: np.ndarray, strata: np.ndarray, settings: VerdictSettings) -> dict:
    """mean(method) ÷ mean(original), both [seeds, facts] on the same facts, with its 95% interval."""
    seeds = min(method.shape[0], original.shape[0])
    method, original = method[:seeds], original[:seeds]
    m, r = bootstrap_means([method, original], strata, settings.n_boot, settings.seed)
    ok = r > 0
    return {
        "value": float(method.mean() / original.mean()) if original.mean() > 0 else None,
        "ci95": interval95(m[ok] / r[ok]) if ok.any() else None,
    }


def interval95(draws: np.ndarray) -> list[float]:
    return [float(x) for x in np.quantile(draws, [0.025, 0.975])]


def precision(e: dict, rec: dict | None, settings: VerdictSettings) -> dict:
    """RTT's two intervals against `settings.precision`: per figure (method − control, recovery) about
    how many V facts a side would narrow it to ± that (None: already so narrow), and those words."""
    needs = {
        "difference": facts_for_precision(e["ci95"], e["facts"], settings),
        "recovery": facts_for_precision(rec["ci95"], e["facts"], settings) if rec else None,
    }
    wide = {k: n for k, n in needs.items() if n}
    words = (
        f"RTT's {' and '.join(wide)} interval{'s' if len(wide) > 1 else ''} wider than "
        f"±{settings.precision:g}: about {max(wide.values())} V facts a side would narrow "
        f"{'them' if len(wide) > 1 else 'it'} to that ({e['facts']} now)"
        if wide
        else ""
    )
    return {"target": settings.precision, **needs, "words": words}
