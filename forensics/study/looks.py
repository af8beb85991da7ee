"""Looks (docs/design.md §9): under a budget, the rows a study's first pass left *inconclusive* get one
more look at a time — the next forget split as V, else one more RTT seed; the runs done are reused,
the rows decided stay as they were — while the next look fits the budget. Every look, the first
included, is decided at alpha / looks: looking again then makes a false *hidden* or *erased* no
likelier than alpha, whatever the looks' correlation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from forensics.attacks.selection import CONTROL, REFERENCE, rtt_metrics
from forensics.lenses.relearn import LABEL as RTT
from forensics.study.verdict import VerdictSettings

OPEN = "inconclusive"  # the verdict more evidence can settle ("inconclusive — attack …" is adequacy's)


def planned(settings) -> int:
    """The looks a study plans: its RTT settings' `looks` under a budget, else one."""
    return settings.looks if settings.budget_minutes is not None else 1


def spent(verdict: VerdictSettings, looks: int) -> VerdictSettings:
    """The verdict settings of every look: alpha split evenly over the planned looks (Bonferroni)."""
    return replace(verdict, alpha=verdict.alpha / looks)


def undecided(summary: Mapping[str, dict], margin: float) -> list[str]:
    """The methods whose verdict more RTT could settle: plain *inconclusive* (any suffix), with RTT's own
    90% interval not yet inside ±`margin` (a row held open by another lens alone gains nothing)."""
    return [
        m
        for m, row in summary.items()
        if row.get("verdict", "").split(" (")[0] == OPEN
        and (rtt := row.get("lenses", {}).get(RTT))
        and not -margin < rtt["ci90"][0] <= rtt["ci90"][1] < margin
    ]


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
    seed on every V split; on the grid the section ended on (its rounds' learning rates and epochs)."""
    vs, seeds = _grid(section).values()
    ran = section.get("grid_run") or {}  # the grid the first pass ended on: every model runs the same
    settings = replace(
        settings, lrs=tuple(ran.get("lrs", settings.lrs)), epochs=ran.get("epochs", settings.epochs)
    )
    if len(vs) < len(forget):
        return replace(settings, rotations=len(vs) + 1, seeds=tuple(seeds)), len(seeds)
    return replace(settings, rotations=len(vs), seeds=(*seeds, max(seeds) + 1)), len(vs)


def merged(section: dict, new: dict) -> dict:
    """An RTT section with `new`'s models (a look's runs) in place of its own; metrics recomputed."""
    out = {**section, **{k: {**section[k], **new[k]} for k in ("grid", "best", "adequacy")}}
    out["v_splits"] = new["v_splits"]  # a look's V splits hold the first pass's
    metrics = rtt_metrics(out["best"], section["chance"], section["settings"].get("select", "cross"))
    out["metrics"] = {
        **section["metrics"],
        **{m: metrics[m] for m in new["best"]},
    }  # decided rows as they were
    return out


def look_again(cfg, ctx, results: dict, first_pass: float, verdict: VerdictSettings) -> dict:
    """Looks 2, 3, … on a study's `results` after its first pass (`ctx`: the lens context it ran with,
    `first_pass`: its stages' seconds as recorded, `verdict`: the spent settings); returns the results
    with `looks`: the plan, each look's V splits, seeds and open rows, and why it stopped. The budget
    is counted in recorded seconds (the first pass's stages, each look's runs as trained), so a rerun
    that reads them back takes the same looks."""
    from forensics.attacks.relearn import relearn
    from forensics.models.checkpoint import write_json
    from forensics.study.summary import reference_check, summarize

    rtt = cfg.settings.of("relearn")
    section = results.get("relearn")
    if planned(rtt) == 1 or not section:
        return results
    margin = verdict.margin
    record = {
        "planned": planned(rtt),
        "alpha_per_look": verdict.alpha,
        "budget_minutes": rtt.budget_minutes,
        "done": [{"look": 1, **_grid(section), "open": undecided(results["summary"], margin)}],
    }
    while len(record["done"]) < record["planned"] and (
        open_ := undecided(results["summary"], verdict.margin)
    ):
        names = [m for m in ctx.models if m in (REFERENCE, CONTROL, *open_)]
        following, pairs = next_look(section, list(ctx.sets.forget), rtt)
        need = look_cost(section, names, pairs)
        left = rtt.budget_minutes * 60 - first_pass - sum(d.get("seconds", 0.0) for d in record["done"][1:])
        if need > left:
            record["stopped"] = (
                f"the next look needs about {need:.0f} s of RTT, {max(left, 0):.0f} s of the budget left"
            )
            break
        before = trained(section)
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
        seconds = round(trained(section) - before, 1)  # what its runs took to train, as recorded
        done = {"look": look, **_grid(section), "models": names, "seconds": seconds}
        record["done"].append({**done, "open": undecided(results["summary"], verdict.margin)})
    return {**results, "looks": record}


def trained(section: dict) -> float:
    """The seconds an RTT section's runs took to train, as each run recorded them (once per run)."""
    return sum(r.get("seconds", 0.0) for runs in section["grid"].values() for r in runs if "same_as" not in r)


def _grid(section: dict) -> dict:
    """The V splits and seeds an RTT section's runs cover (a look's record)."""
    seeds = sorted({r.get("seed", 0) for runs in section["grid"].values() for r in runs})
    return {"v_splits": list(section["v_splits"]), "seeds": seeds}
