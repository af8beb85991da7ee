"""Looks (docs/design.md §9): under a budget, the rows a study's first pass left *inconclusive* get one
more look at a time — the next forget split as V, else one more RTT seed; the runs done are reused,
the rows decided stay as they were — while the next look fits the budget. Every look, the first
included, is decided at alpha / looks: looking again then makes a false *hidden* or *erased* no
likelier than alpha, whatever the looks' correlation."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from forensics.attacks.selection import CONTROL, REFERENCE, rtt_metrics
from forensics.study.verdict import VerdictSettings

OPEN = "inconclusive"  # the verdict more evidence can settle ("inconclusive — attack …" is adequacy's)


def planned(settings) -> int:
    """The looks a study plans: its RTT settings' `looks` under a budget, else one."""
    return settings.looks if settings.budget_minutes is not None else 1


def spent(verdict: VerdictSettings, looks: int) -> VerdictSettings:
    """The verdict settings of every look: alpha split evenly over the planned looks (Bonferroni)."""
    return replace(verdict, alpha=verdict.alpha / looks)


def undecided(summary: Mapping[str, dict]) -> list[str]:
    """The methods whose verdict more evidence could settle (plain *inconclusive*, any suffix)."""
    return [m for m, row in summary.items() if row.get("verdict", "").split(" (")[0] == OPEN]


def look_cost(section: dict, models: Sequence[str], pairs: int) -> float:
    """Seconds a look takes that adds `pairs` (V split, seed) pairs to each of `models`: the runs one pair
    took per model in the section's last round × the mean seconds of a run it trained."""
    grid = section.get("grid") or {}
    ran = [r for runs in grid.values() for r in runs if "same_as" not in r]
    if not ran:
        return 0.0
    per_run = sum(r.get("seconds", 0.0) for r in ran) / len(ran)
    first = (ran[0]["v"], ran[0].get("seed", 0))
    runs = sum(1 for m in models for r in grid.get(m, []) if (r["v"], r.get("seed", 0)) == first)
    return per_run * runs * pairs


def next_look(section: dict, forget: Sequence[str], settings):
    """What one more look runs, and how many (V split, seed) pairs it adds per model: the next forget
    split as V while some split has not been V (new facts, the most a look can add), else one more
    seed on every V split."""
    vs, seeds = _grid(section).values()
    if len(vs) < len(forget):
        return replace(settings, rotations=len(vs) + 1, seeds=tuple(seeds)), len(seeds)
    return replace(settings, rotations=len(vs), seeds=(*seeds, max(seeds) + 1)), len(vs)


def merged(section: dict, new: dict) -> dict:
    """An RTT section with `new`'s models (a look's runs) in place of its own; metrics recomputed."""
    out = {**section, **{k: {**section[k], **new[k]} for k in ("grid", "best", "adequacy")}}
    out["v_splits"] = new["v_splits"]  # a look's V splits hold the first pass's
    out["metrics"] = rtt_metrics(out["best"], section["chance"], section["settings"].get("select", "cross"))
    return out


def look_again(cfg, ctx, results: dict, started: float, verdict: VerdictSettings) -> dict:
    """Looks 2, 3, … on a study's `results` after its first pass (`ctx`: the lens context it ran with,
    `started`: its start on the perf counter, `verdict`: the spent settings); returns the results with
    `looks`: the plan, each look's V splits, seeds and open rows, and why it stopped."""
    from forensics.attacks.relearn import relearn
    from forensics.models.checkpoint import write_json
    from forensics.study.summary import reference_check, summarize

    rtt = cfg.settings.of("relearn")
    section = results.get("relearn")
    if planned(rtt) == 1 or not section:
        return results
    record = {
        "planned": planned(rtt),
        "alpha_per_look": verdict.alpha,
        "budget_minutes": rtt.budget_minutes,
        "done": [{"look": 1, **_grid(section), "open": undecided(results["summary"])}],
    }
    while len(record["done"]) < record["planned"] and (open_ := undecided(results["summary"])):
        names = [m for m in ctx.models if m in (REFERENCE, CONTROL, *open_)]
        following, pairs = next_look(section, list(ctx.sets.forget), rtt)
        need = look_cost(section, names, pairs)
        left = rtt.budget_minutes * 60 - (time.perf_counter() - started)
        if need > left:
            record["stopped"] = (
                f"the next look needs about {need:.0f} s of RTT, {max(left, 0):.0f} s of the budget left"
            )
            break
        begun = time.perf_counter()
        new = relearn(
            {m: ctx.models[m] for m in names},
            ctx.sets,
            ctx.out,
            following,
            progress=ctx.progress,
            runtime=ctx.runtime,
            executor=cfg.jobs(),
        )
        section = results["relearn"] = merged(section, new)
        write_json(section, ctx.out / "relearn.json")  # the look wrote its models' alone
        results["reference"] = reference_check(results, verdict)
        look = len(record["done"]) + 1
        rows = summarize(results, open_, verdict)
        for row in rows.values():
            row["look"] = look
        results["summary"].update(rows)
        seconds = round(time.perf_counter() - begun, 1)
        done = {"look": look, **_grid(section), "models": names, "seconds": seconds}
        record["done"].append({**done, "open": undecided(results["summary"])})
    return {**results, "looks": record}


def _grid(section: dict) -> dict:
    """The V splits and seeds an RTT section's runs cover (a look's record)."""
    seeds = sorted({r.get("seed", 0) for runs in section["grid"].values() for r in runs})
    return {"v_splits": list(section["v_splits"]), "seeds": seeds}
