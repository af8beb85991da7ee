"""A study: a TOML config → every lens on every checkpoint → `results.json` (+ the HTML report).

Each stage's output is kept under `OUT/stages/<stage>.json` with a key hashed from its inputs (the
checkpoints' weights, the facts, the stage's settings); a rerun skips stages whose key matches, so
a killed study resumes where it stopped. `results.json` is written atomically at the end.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from forensics.cache import checkpoint_digest
from forensics.checkpoint import check_dir, read_json, write_json
from forensics.errors import InputError
from forensics.facts import Sets, load_facts, select

SCHEMA_VERSION = 1
LENSES = ("accuracy", "relearn", "quantize", "ablate", "probes", "weights", "activations", "localize")
REFERENCE, CONTROL = "original", "never_learned"


@dataclass
class StudyConfig:
    """What a study runs on and how; paths are resolved against the config file's folder."""

    name: str
    out: Path
    original: Path
    unlearned: dict[str, Path]
    facts: Path
    forget: tuple[str, ...]
    retain: tuple[str, ...]
    never_learned: Path | None = None
    near_retain: tuple[str, ...] = ()
    drop_duplicates: bool = False
    scorer: str = "choice"
    seed: int = 0
    lenses: tuple[str, ...] = LENSES
    relearn: dict = field(default_factory=dict)
    quantize: dict = field(default_factory=dict)
    probes: dict = field(default_factory=dict)
    localize: dict = field(default_factory=lambda: {"lrs": [1e-3], "epochs": 4})
    grid: str = "full"  # "full", or "demo" for the demo's lighter grids (named in the report)

    def models(self) -> dict[str, Path]:
        """Every checkpoint, the original first and the control second."""
        out = {REFERENCE: self.original}
        if self.never_learned:
            out[CONTROL] = self.never_learned
        return {**out, **self.unlearned}

    def as_json(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))


def load_config(path: Path) -> StudyConfig:
    """Parse and check a study TOML; every problem is an InputError naming the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: malformed TOML ({e})") from None
    here = path.parent

    def need(table: dict, key: str, where: str):
        if key not in table:
            raise InputError(f"{path}: missing '{key}' in {where}")
        return table[key]

    def resolve(p: str) -> Path:
        return (here / p).resolve()

    models, facts = need(raw, "models", "the config"), need(raw, "facts", "the config")
    lenses = raw.get("lenses", {})
    run = tuple(lenses.get("run", LENSES))
    for lens in run:
        if lens not in LENSES:
            raise InputError(f"{path}: unknown lens '{lens}' (choose from {', '.join(LENSES)})")
    unlearned = {str(k): resolve(v) for k, v in need(models, "unlearned", "[models]").items()}
    if not unlearned:
        raise InputError(f"{path}: [models.unlearned] names no checkpoint")
    for name in unlearned:
        if name in (REFERENCE, CONTROL):
            raise InputError(f"{path}: '{name}' is reserved; name the unlearned checkpoint otherwise")
    name = str(raw.get("name", path.stem))
    cfg = StudyConfig(
        name=name,
        out=resolve(raw["out"]) if "out" in raw else Path("runs") / name,
        original=resolve(need(models, "original", "[models]")),
        never_learned=resolve(models["never_learned"]) if "never_learned" in models else None,
        unlearned=unlearned,
        facts=resolve(need(facts, "path", "[facts]")),
        forget=tuple(need(facts, "forget", "[facts]")),
        retain=tuple(need(facts, "retain", "[facts]")),
        near_retain=tuple(facts.get("near_retain", ())),
        drop_duplicates=bool(facts.get("drop_duplicates", False)),
        scorer=str(raw.get("scorer", "choice")),
        seed=int(raw.get("seed", 0)),
        lenses=run,
        relearn=dict(lenses.get("relearn", {})),
        quantize=dict(lenses.get("quantize", {})),
        probes=dict(lenses.get("probes", {})),
        localize=dict(lenses.get("localize", {"lrs": [1e-3], "epochs": 4})),
        grid=str(raw.get("grid", "full")),
    )
    for model, model_path in cfg.models().items():
        try:
            check_dir(model_path)
        except InputError as e:
            raise InputError(f"{path}: model '{model}': {e}") from None
    if not cfg.facts.exists():
        raise InputError(f"{path}: facts '{cfg.facts}' not found")
    return cfg


def _facts_digest(sets: Sets) -> str:
    facts = [*sets.forget_facts(), *sets.near_retain, *sets.retain]
    blob = json.dumps([(f.split, f.question, list(f.choices), f.answer) for f in facts])
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _stage(out: Path, name: str, inputs: dict, fn: Callable[[], dict], timings: dict) -> dict:
    """Run `fn` unless OUT/stages/<name>.json holds a result for the same inputs."""
    key = hashlib.blake2b(
        json.dumps(inputs, sort_keys=True, default=str).encode(), digest_size=16
    ).hexdigest()
    file = out / "stages" / f"{name}.json"
    if file.exists() and (done := read_json(file)).get("key") == key:
        timings[name] = {"seconds": done["seconds"], "resumed": True}
        return done["result"]
    start = time.perf_counter()
    result = json.loads(json.dumps(fn()))
    seconds = round(time.perf_counter() - start, 2)
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json({"key": key, "seconds": seconds, "result": result}, file)
    timings[name] = {"seconds": seconds, "resumed": False}
    return result


def versions() -> dict:
    import torch
    import transformer_lens
    import transformers

    return {
        "forensics": metadata.version("unlearning-forensics"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
    }


def run_study(cfg: StudyConfig, progress: bool = True) -> dict:
    """Every requested lens on every checkpoint; writes OUT/results.json and returns it."""
    from forensics.attacks.ablate import ablate_attack, forget_residuals
    from forensics.attacks.quantize import quantize_attack
    from forensics.attacks.relearn import RelearnSettings, relearn
    from forensics.checkpoint import boot_bridge, load_checkpoint
    from forensics.localize import activations_section, localize_section, weights_section
    from forensics.probing import ProbeSettings, probe_models
    from forensics.scoring import accuracy_table

    sets = select(load_facts(cfg.facts), cfg.forget, cfg.retain, cfg.near_retain, cfg.drop_duplicates)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    models, unlearned = cfg.models(), cfg.unlearned
    digests = {name: checkpoint_digest(path) for name, path in models.items()}
    base = {"facts": _facts_digest(sets), "scorer": cfg.scorer, "seed": cfg.seed}
    timings: dict = {}
    results: dict = {}
    relearn_settings = RelearnSettings(scorer=cfg.scorer, seed=cfg.seed, **_tuples(cfg.relearn))
    localize_settings = RelearnSettings(scorer=cfg.scorer, seed=cfg.seed, **_tuples(cfg.localize))
    probe_settings = ProbeSettings(seed=cfg.seed, **_tuples(cfg.probes))
    bits = tuple(cfg.quantize.get("bits", (8, 4)))

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
            lambda: relearn(models, sets, out, relearn_settings, progress=progress),
            {"models": digests, "settings": asdict(relearn_settings)},
        ),
        "quantize": (
            lambda: quantize_attack(models, sets, cfg.scorer, bits, results.get("accuracy")),
            {"models": digests, "bits": bits},
        ),
        "ablate": (ablate, {"models": digests}),
        "probes": (
            lambda: probe_models(models, sets, cfg.scorer, out / "cache", probe_settings),
            {"models": digests, "settings": asdict(probe_settings)},
        ),
        "weights": (lambda: weights_section(cfg.original, unlearned), {"models": digests}),
        "activations": (
            lambda: activations_section(cfg.original, unlearned, sets, cfg.scorer, out / "cache"),
            {"models": digests},
        ),
        "localize": (
            lambda: localize_section(cfg.original, unlearned, sets, localize_settings, progress),
            {"models": digests, "settings": asdict(localize_settings)},
        ),
    }
    for lens in LENSES:
        if lens in cfg.lenses:
            fn, inputs = stages[lens]
            results[lens] = _stage(out, lens, {**base, **inputs}, fn, timings)
    results = {
        "schema_version": SCHEMA_VERSION,
        "name": cfg.name,
        "config": cfg.as_json(),
        "versions": versions(),
        "seeds": {"study": cfg.seed, "relearn": relearn_settings.seed, "probes": probe_settings.seed},
        "sets": _sets_summary(sets),
        "models": {name: str(path) for name, path in models.items()},
        "unlearned": list(unlearned),
        **results,
        "summary": summarize(results, list(unlearned), chance=_chance(sets)),
        "timings": timings,
    }
    write_json(results, out / "results.json")
    return results


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


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
