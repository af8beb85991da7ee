"""A study: a TOML config → every lens on every checkpoint → `results.json` (+ the HTML report).

Each stage's output is kept under `OUT/stages/<stage>.json` with a key hashed from its inputs (the
checkpoints' weights, the facts, the stage's settings); a rerun skips stages whose key matches, so
a killed study resumes where it stopped. `results.json` is written atomically at the end.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping
from functools import partial
from importlib import metadata
from pathlib import Path

from forensics.errors import InputError, warn
from forensics.facts.core import Sets, assign_kinds, select
from forensics.facts.load import load_facts
from forensics.lenses import REGISTRY, Context, run_order
from forensics.models.cache import enforce_cap
from forensics.models.checkpoint import read_json, read_metadata, write_json
from forensics.models.digest import checkpoint_digest, facts_digest
from forensics.models.digest import key as digest_key
from forensics.models.pair import check_models
from forensics.models.train import warn_again
from forensics.outdir import claim
from forensics.study.config import CONTROL, StudyConfig
from forensics.study.looks import look_again, planned, spent
from forensics.study.summary import action_map, reference_check, summarize

SCHEMA_VERSION = 2  # 2: per-fact outcomes, the control through every lens, statistical verdicts
STUDY_FILES = ("results.json", "summary.md", "report/index.html")  # what every study writes at its top


def _stage(out: Path, name: str, inputs: dict, fn: Callable[[], dict], timings: dict) -> dict:
    """Run `fn` unless OUT/stages/<name>.json holds a result for the same inputs; a stage file that
    cannot be read is recomputed, with a warning."""
    stage_key = digest_key("stage", name, inputs)
    file = out / "stages" / f"{name}.json"  # a lens name from LENSES
    if file.exists():
        try:
            done = read_json(file)
            if done.get("key") == stage_key:
                timings[name] = {"seconds": done["seconds"], "resumed": True}
                return done["result"]
        except (InputError, KeyError, AttributeError) as e:
            warn(f"{file}: unreadable stage result, recomputing ({e})")
    start = time.perf_counter()
    result = json.loads(json.dumps(fn()))
    seconds = round(time.perf_counter() - start, 2)
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json({"key": stage_key, "seconds": seconds, "result": result}, file)
    timings[name] = {"seconds": seconds, "resumed": False}
    return result


def versions() -> dict:
    import torch
    import transformers

    return {
        "forensics": metadata.version("unlearning-forensics"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": metadata.version("transformer-lens"),
    }


def run_study(cfg: StudyConfig, progress: bool = True, force: bool = False) -> dict:
    """Every requested lens on every checkpoint; writes OUT/results.json and returns it.

    The checkpoints are checked as a pair with the original before anything runs; OUT is claimed
    (refused when it is someone else's folder, unless `force`, or while another study holds it)."""
    sets = study_sets(cfg)
    models, unlearned = cfg.models(), cfg.unlearned
    check_models(models, sets, cfg.scorer, cfg.settings.of("relearn").fmt)
    cfg.jobs().start()  # a cluster that does not answer stops the study before anything is written
    digests = {name: checkpoint_digest(path) for name, path in models.items()}
    run = cfg.runtime
    base = {
        "facts": facts_digest([*sets.forget_facts(), *sets.near_retain, *sets.retain, *sets.control_facts()]),
        "scorer": cfg.scorer,
        "runtime": run.as_json(),  # dtype and device move numbers; the executor does not
    }
    timings: dict = {}
    results: dict = {}
    grid = cfg.settings
    out = Path(cfg.out)
    cache = out / "cache"

    with claim(
        out, "study", force, outputs=[*STUDY_FILES, *(f"stages/{n}.json" for n in run_order(cfg.lenses))]
    ):
        warn_again()
        ctx = Context(cfg, sets, models, digests, out, progress, results)
        for name in run_order(cfg.lenses):
            lens = REGISTRY[name]
            results[name] = _stage(out, name, {**base, **lens.inputs(ctx)}, partial(lens.run, ctx), timings)
            if cfg.cache_max_gb is not None:
                enforce_cap(cache, cfg.cache_max_gb)
        results = {
            "schema_version": SCHEMA_VERSION,
            "name": cfg.name,
            "config": cfg.as_json(),
            "versions": versions(),
            "seeds": {"relearn": list(grid.of("relearn").seeds), "probes": grid.of("probes").seed},
            "sets": _sets_summary(sets),
            "facts": {  # the forget facts every per-fact outcome is listed in
                "splits": [f.split for f in sets.forget_facts()],
                "chance": [1 / len(f.choices) for f in sets.forget_facts()],
                "kinds": [f.kind for f in sets.forget_facts()],
                # facts the original does not know, scored beside V (the control without a model)
                "control_splits": [f.split for f in sets.control_facts()],
                "control_chance": [1 / len(f.choices) for f in sets.control_facts()],
            },
            "models": {name: str(path) for name, path in models.items()},
            "unlearned": list(unlearned),
            "unlearning": unlearning_records(unlearned),
            **results,
            "timings": timings,
        }
        # under a budget every look (the first too) is decided at alpha split over the planned looks
        verdict = spent(cfg.verdict, planned(grid.of("relearn")) if "relearn" in cfg.lenses else 1)
        results["reference"] = reference_check(results, verdict)
        results["summary"] = summarize(results, list(unlearned), verdict)
        first_pass = sum(t["seconds"] for t in timings.values())  # as recorded, resumed stages too
        results = look_again(cfg, ctx, results, first_pass, verdict)
        if CONTROL in models:
            results["control_action_map"] = action_map(results, CONTROL)
        results["action_rows"] = {
            row: title for lens in REGISTRY.values() for row, title in lens.rows.items()
        }
        write_json(results, out / "results.json")
    return results


def study_sets(cfg: StudyConfig) -> Sets:
    """The study's facts (with the kinds its config gives) and its forget/near-retain/retain sets."""
    facts = assign_kinds(load_facts(cfg.facts, cfg.partition, cfg.facts_seed), cfg.kinds)
    return select(facts, cfg.forget, cfg.retain, cfg.near_retain, cfg.drop_duplicates, cfg.control)


def unlearning_records(unlearned: Mapping[str, Path]) -> dict:
    """Per unlearned checkpoint `forensics unlearn` made: whether its sweep met the rule, the rule
    (its words and its corner), the kept run's accuracy, every run's forget and retain accuracy (the
    report's frontier) and the sweep's cost (checkpoints made elsewhere are not listed)."""
    out = {}
    for name, path in unlearned.items():
        meta = read_metadata(path)
        if meta.get("made_by") == "forensics unlearn" and "unlearning_failed" in meta:
            out[name] = {
                "failed": meta["unlearning_failed"],
                "rule": meta["rule"]["text"],
                "corner": {k: meta["rule"][k] for k in ("forget_at_most", "retain_at_least")},
                "accuracy": meta["chosen"]["accuracy"],
                "runs": [
                    {"params": r["params"], "round": r["round"], "met": r["met"]}
                    | {k: r["accuracy"][k] for k in ("forget", "retain")}
                    for r in meta["sweep"]
                ],
                "cost": meta["cost"],
            }
    return out


def _sets_summary(sets: Sets, examples: int = 3) -> dict:
    def show(facts):
        return [
            {"question": f.question, "choices": list(f.choices), "answer": f.answer} for f in facts[:examples]
        ]

    return {
        "forget": {name: len(facts) for name, facts in sets.forget.items()},
        "near_retain": len(sets.near_retain),
        "retain": len(sets.retain),
        "control": {name: len(facts) for name, facts in sets.control.items()},
        "examples": {"forget": show(sets.forget_facts()), "retain": show(list(sets.retain))},
        "dropped_duplicates": [f.question for f in sets.dropped],
    }
