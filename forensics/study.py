"""A study: a TOML config → every lens on every checkpoint → `results.json` (+ the HTML report).

Each stage's output is kept under `OUT/stages/<stage>.json` with a key hashed from its inputs (the
checkpoints' weights, the facts, the stage's settings); a rerun skips stages whose key matches, so
a killed study resumes where it stopped. `results.json` is written atomically at the end.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np

from forensics.cache import enforce_cap
from forensics.checkpoint import read_json, write_json
from forensics.digest import checkpoint_digest, facts_digest
from forensics.digest import key as digest_key
from forensics.errors import InputError, warn
from forensics.facts import Sets, load_facts, select
from forensics.outdir import claim, safe_name
from forensics.pair import check_models
from forensics.study_config import CONTROL, LENSES, REFERENCE, StudyConfig
from forensics.unlearn.run import UnlearnSettings

SCHEMA_VERSION = 1


def _stage(out: Path, name: str, inputs: dict, fn: Callable[[], dict], timings: dict) -> dict:
    """Run `fn` unless OUT/stages/<name>.json holds a result for the same inputs; a stage file that
    cannot be read is recomputed, with a warning."""
    stage_key = digest_key("stage", name, inputs)
    file = out / "stages" / f"{safe_name(name)}.json"
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
    from forensics.attacks.ablate import ablate_attack, forget_residuals
    from forensics.attacks.quantize import quantize_attack
    from forensics.attacks.relearn import relearn
    from forensics.checkpoint import boot_bridge, load_checkpoint
    from forensics.localize import activations_section, localize_section, weights_section
    from forensics.probing import probe_models
    from forensics.scoring import accuracy_table

    sets = select(load_facts(cfg.facts), cfg.forget, cfg.retain, cfg.near_retain, cfg.drop_duplicates)
    models, unlearned = cfg.models(), cfg.unlearned
    check_models(models, sets, cfg.scorer, cfg.settings.relearn.fmt)
    digests = {name: checkpoint_digest(path) for name, path in models.items()}
    base = {"facts": facts_digest([*sets.forget_facts(), *sets.near_retain, *sets.retain])}
    base.update(scorer=cfg.scorer, seed=cfg.seed)
    timings: dict = {}
    results: dict = {}
    grid = cfg.settings
    out = Path(cfg.out)
    cache = out / "cache"

    def accuracy() -> dict:
        tables = {}
        for name, path in models.items():
            model, tok = load_checkpoint(path)
            tables[name] = accuracy_table(model, tok, sets, cfg.scorer)
        return tables

    def ablate() -> dict:
        original = forget_residuals(boot_bridge(cfg.original), sets, cfg.scorer)
        return {n: ablate_attack(boot_bridge(p), original, sets, cfg.scorer) for n, p in unlearned.items()}

    stages = {
        "accuracy": (accuracy, {"models": digests}),
        "relearn": (
            lambda: relearn(models, sets, out, grid.relearn, progress=progress),
            {"models": digests, "settings": asdict(grid.relearn)},
        ),
        "quantize": (
            lambda: quantize_attack(models, sets, cfg.scorer, grid.quantize.bits, results.get("accuracy")),
            {"models": digests, "settings": asdict(grid.quantize)},
        ),
        "ablate": (ablate, {"models": digests}),
        "probes": (
            lambda: probe_models(models, sets, cfg.scorer, cache, grid.probes),
            {"models": digests, "settings": asdict(grid.probes)},
        ),
        "weights": (lambda: weights_section(cfg.original, unlearned), {"models": digests}),
        "activations": (
            lambda: activations_section(cfg.original, unlearned, sets, cfg.scorer, cache),
            {"models": digests},
        ),
        "localize": (
            lambda: localize_section(cfg.original, unlearned, sets, grid.localize, progress),
            {"models": digests, "settings": asdict(grid.localize)},
        ),
    }
    with claim(out, "study", force):
        for lens in LENSES:
            if lens in cfg.lenses:
                fn, inputs = stages[lens]
                results[lens] = _stage(out, lens, {**base, **inputs}, fn, timings)
                if cfg.cache_max_gb is not None:
                    enforce_cap(cache, cfg.cache_max_gb)
        results = {
            "schema_version": SCHEMA_VERSION,
            "name": cfg.name,
            "config": cfg.as_json(),
            "versions": versions(),
            "seeds": {"study": cfg.seed, "relearn": grid.relearn.seed, "probes": grid.probes.seed},
            "sets": _sets_summary(sets),
            "models": {name: str(path) for name, path in models.items()},
            "unlearned": list(unlearned),
            **results,
            "summary": summarize(results, list(unlearned), chance=_chance(sets)),
            "timings": timings,
        }
        write_json(results, out / "results.json")
    return results


def _chance(sets: Sets) -> float:
    return float(np.mean([1 / len(f.choices) for f in sets.forget_facts()]))


def _sets_summary(sets: Sets, examples: int = 3) -> dict:
    def show(facts):
        return [
            {"question": f.question, "choices": list(f.choices), "answer": f.answer} for f in facts[:examples]
        ]

    return {
        "forget": {name: len(facts) for name, facts in sets.forget.items()},
        "near_retain": len(sets.near_retain),
        "retain": len(sets.retain),
        "examples": {"forget": show(sets.forget_facts()), "retain": show(list(sets.retain))},
        "dropped_duplicates": [f.question for f in sets.dropped],
    }


def _best_layer(values: list[float], names: list[str]) -> tuple[str, float]:
    i = int(np.argmax(values))
    return names[i], float(values[i])


def summarize(results: dict, unlearned: list[str], chance: float) -> dict:
    """Per method: the headline numbers, a hiding map over layers and a verdict with its evidence."""
    acc, rtt, probes = results.get("accuracy", {}), results.get("relearn", {}), results.get("probes", {})
    quant, abl = results.get("quantize", {}), results.get("ablate", {})
    out = {}
    for name in unlearned:
        row: dict = {"chance": chance}
        if name in acc:
            row["forget"], row["retain"] = acc[name]["forget"], acc[name]["retain"]
            row["near_retain"] = acc[name].get("near_retain")
            if REFERENCE in acc:
                row["original_retain"] = acc[REFERENCE]["retain"]
        metrics = rtt.get("metrics", {})
        if name in metrics:
            row["rtt_acc_v"] = metrics[name]["acc_v"]["mean"]
            row["rtt_recovery"] = metrics[name]["recovery"]["mean"]
            if CONTROL in metrics:
                row["rtt_control"] = metrics[CONTROL]["acc_v"]["mean"]
        if name in quant.get("models", {}):
            q = quant["models"][name]
            row["quantized_forget"] = max(q[f"int{b}"]["forget"] for b in quant["bits"])
        if name in abl:
            best = abl[name]["best_layer"]
            row["ablation_v"], row["ablation_layer"] = abl[name]["mean_after"][best], best
        layers = probes.get("layers")
        if layers and name in probes["models"]:
            probe = [p["acc"] for p in probes["models"][name]["probe"]]
            row["probe_layer"], row["probe_acc"] = _best_layer(probe, layers)
            if CONTROL in probes["models"]:
                never = [p["acc"] for p in probes["models"][CONTROL]["probe"]]
                row["probe_control"] = never[layers.index(row["probe_layer"])]
        row["hiding_map"] = hiding_map(results, name)
        row["verdict"], row["evidence"] = verdict(row)
        out[name] = row
    return out


def hiding_map(results: dict, name: str) -> dict | None:
    """Per block: the strongest sign that forget answers are still there at that layer — probe
    accuracy above the never-learned control's, or forget accuracy restored by reverting or patching
    the layer (above the unlearned model's own; not patching after the last block, which is the
    original's output by construction), clipped to [0, 1]."""
    probes, loc = results.get("probes", {}), results.get("localize", {}).get(name)
    layers = probes.get("layers")
    if not layers and not loc:
        return None
    n = len(layers) - 1 if layers else len(loc["revert"])
    values = [0.0] * n
    if layers and name in probes["models"] and CONTROL in probes["models"]:
        for i in range(n):
            mine = probes["models"][name]["probe"][i + 1]["acc"]
            values[i] = max(values[i], mine - probes["models"][CONTROL]["probe"][i + 1]["acc"])
    if loc:
        before = loc["before"]["forget"]
        for i in range(n):
            # patching after the last block reproduces the original's output: no evidence, left out
            patched = loc["patch"][i]["forget"] if i < n - 1 else before
            values[i] = max(values[i], loc["revert"][i]["forget"] - before, patched - before)
    return {"layers": [str(i) for i in range(n)], "values": [min(1.0, max(0.0, v)) for v in values]}


def verdict(row: dict) -> tuple[str, str]:
    """A label and the evidence behind it (never a bare label)."""
    chance, evidence = row["chance"], []
    if "forget" not in row:
        return "unknown", "accuracy was not measured"
    evidence.append(f"forget accuracy {row['forget']:.2f} (chance {chance:.2f}), retain {row['retain']:.2f}")
    floor = UnlearnSettings().min_retain * row.get("original_retain", 0.0)
    if row["retain"] < floor:
        evidence.append(
            f"retain fell below {UnlearnSettings().min_retain:g} × the original's "
            f"{row['original_retain']:.2f} (the unlearning rule): the model collapsed rather than forgot"
        )
        return "not unlearned", "; ".join(evidence)
    if row["forget"] > chance + 0.25:
        return "not unlearned", "; ".join(evidence)
    signs = []
    lenses = (
        (
            "RTT",
            "rtt_acc_v",
            "rtt_control",
            "RTT brings V back to {:.2f}",
            " vs {:.2f} for the never-learned control",
        ),
        (
            "probe",
            "probe_acc",
            "probe_control",
            "a linear probe reads {:.2f} at layer {}",
            " (never-learned {:.2f})",
        ),
    )
    for sign, key, control_key, text, versus in lenses:
        if key in row:
            control = row.get(control_key)
            evidence.append(
                text.format(row[key], row.get("probe_layer"))
                + (versus.format(control) if control is not None else "")
            )
            if row[key] - (control if control is not None else chance) > 0.15:
                signs.append(sign)
    if row.get("ablation_v", 0) - row["forget"] > 0.15:
        evidence.append(
            f"ablating one direction at layer {row['ablation_layer']} gives {row['ablation_v']:.2f}"
        )
        signs.append("ablation")
    if row.get("quantized_forget", 0) - row["forget"] > 0.15:
        evidence.append(f"quantization brings forget to {row['quantized_forget']:.2f}")
        signs.append("quantization")
    hmap = row.get("hiding_map")
    if hmap and max(hmap["values"], default=0) > 0.15:
        i = int(np.argmax(hmap["values"]))
        evidence.append(f"the hiding map peaks at layer {hmap['layers'][i]} ({hmap['values'][i]:.2f})")
        signs.append("localization")
    if signs:
        return "hidden", "; ".join(evidence) + f" — recovered by {', '.join(signs)}"
    return "erased (as far as these lenses see)", "; ".join(evidence)
