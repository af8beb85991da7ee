"""The embedded world (docs/design.md §3): independent year facts, a tokenizer, and two small Llama models.

Family A: fictional people and birth years; family B: fictional ships and launch years. Forget is
part of A (in splits, for the RTT rotation), near-retain the rest of A, retain is B. `original`
learns every fact; `never_learned` learns all but the forget facts, the exact-unlearning control.
A paper-layout folder can stand in for the generated facts.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from forensics.errors import InputError
from forensics.facts.core import Fact, Sets, load_jsonl, select, write_jsonl
from forensics.facts.formats import default_format, examples, letter_target
from forensics.models.arch import tiny_config
from forensics.models.checkpoint import load_checkpoint, read_json, save_checkpoint, write_json
from forensics.models.executor import Executor, Job
from forensics.models.runtime import Runtime, torch_device
from forensics.models.scoring import accuracy_table, score
from forensics.models.train import TrainConfig, train
from forensics.outdir import claim
from forensics.worlds import kinds as world_kinds
from forensics.worlds.spec import WorldConfig, check_config, generate_facts, world_sets, world_texts

FACTS_FILE = "facts.jsonl"
WORLD_FILE = "world.json"
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


def build_tokenizer(texts: list[str], vocab_size: int, n_letters: int = 4) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the world's text; prompts start with <bos>.

    The answer letters " A", " B", … are added as whole-word tokens, so the letter scorer reads one
    logit per letter however small the vocabulary.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens(
        [AddedToken(letter_target(i), single_word=True, normalized=False) for i in range(n_letters)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", SPECIAL.index("<bos>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def world_tokenizer(texts: list[str], vocab_size: int, n_letters: int) -> tuple[PreTrainedTokenizerFast, int]:
    """The tokenizer trained on `texts` and the models' position count: room for the longest text."""
    tokenizer = build_tokenizer(texts, vocab_size, n_letters)
    longest = max(len(tokenizer(t)["input_ids"]) for t in texts)
    return tokenizer, max(128, 1 << (longest + 8).bit_length())


def build_model(cfg: WorldConfig, tokenizer, n_positions: int):
    """A small model of the config's HF family (`model_type`), initialised from the config's seed."""
    torch.manual_seed(cfg.seed)
    config = tiny_config(
        cfg.model_type,
        vocab_size=len(tokenizer),
        d_model=cfg.d_model,
        layers=cfg.layers,
        heads=cfg.heads,
        n_positions=n_positions,
        special={k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")},
    )
    return AutoModelForCausalLM.from_config(config)


def train_world_model(
    cfg: WorldConfig,
    tokenizer,
    facts: list[Fact],
    n_positions: int,
    name: str,
    progress: bool,
    runtime: Runtime = Runtime(),
    data: list | None = None,
    start: Path | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train a model until it answers `facts`: a fresh one on `data` (default: `facts` in the
    scorer's format plus their corpus statements), or — an implant — the checkpoint at `start`,
    briefly (`implant_epochs` at `implant_lr`).

    Stops early once every trained fact is answered correctly, or, above 0.95, when two checks in a
    row (every `eval_every` epochs) bring no gain: the paper's data holds a few questions no model can
    get right (the answer listed twice among the choices).
    """
    device, dtype = torch_device(runtime.device), runtime.torch_dtype()
    if start is None:
        model = build_model(cfg, tokenizer, n_positions).to(device, dtype)
        lr, epochs = cfg.lr, cfg.epochs
    else:
        model, _ = load_checkpoint(start, runtime)
        model.requires_grad_(True)
        lr, epochs = cfg.implant_lr, cfg.implant_epochs
    if data is None:
        data = examples(facts, default_format(cfg.scorer))
        data += examples([f for f in facts if f.statements], "corpus")
    every = cfg.eval_every if start is None else 1

    seen: list[float] = []

    def on_epoch(epoch: int, m) -> dict | None:
        if epoch % every and epoch != epochs:
            return None
        seen.append(score(m, tokenizer, facts, cfg.scorer).accuracy)
        plateau = len(seen) > 2 and seen[-1] >= 0.95 and max(seen[-2:]) <= seen[-3]
        return {"train_accuracy": seen[-1], "stop": seen[-1] >= 1.0 or plateau}

    steps_per_epoch = -(-len(data) // cfg.batch_size)
    tcfg = TrainConfig(
        lr=lr,
        epochs=epochs,
        batch_size=cfg.batch_size,
        warmup=steps_per_epoch,
        schedule="cosine",
        weight_decay=0.01,
        seed=cfg.seed,
    )
    history = train(
        model, tokenizer, {"train": data}, tcfg, on_epoch=on_epoch, desc=f"world: {name}", progress=progress
    )
    return model, history


def build_world(
    out: Path,
    cfg: WorldConfig = WorldConfig(),
    progress: bool = True,
    force: bool = False,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
) -> dict:
    """Build (or reuse, when `world.json` matches `cfg`) the world under `out`, training on `runtime`'s
    device (in float32 unless it names a dtype), the two models as jobs of `executor`; returns
    world.json. `out` is claimed first: another program's folder is refused unless `force`."""
    out = Path(out)
    check_config(cfg)
    with claim(out, "world", force, outputs=[FACTS_FILE, WORLD_FILE]):
        return _build_world(out, cfg, progress, runtime, executor)


def _build_world(out: Path, cfg: WorldConfig, progress: bool, runtime: Runtime, executor: Executor) -> dict:
    existing = out / WORLD_FILE
    if existing.exists():
        world = read_json(existing)
        built = all(
            (out / m["path"] / "model.safetensors").exists() for m in world.get("models", {}).values()
        )
        if world.get("config") == cfg.to_json() and built:
            return world
    if cfg.kinds:
        return _build_kinds_world(out, cfg, progress, runtime, executor)
    sets = world_sets(cfg)
    everything = sets.forget_facts() + list(sets.near_retain) + list(sets.retain)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(everything, out / FACTS_FILE)
    n_letters = max(len(f.choices) for f in everything)
    texts = world_texts(everything)
    tokenizer, n_positions = world_tokenizer(texts, cfg.vocab_size, n_letters)
    learned = {"original": everything, "never_learned": list(sets.near_retain) + list(sets.retain)}
    world: dict = {
        "config": cfg.to_json(),
        "facts": FACTS_FILE,
        "sets": {
            "forget": list(sets.forget),
            "near_retain": _split_names(sets.near_retain),
            "retain": _split_names(sets.retain),
        },
        "dropped_duplicates": [f.source for f in sets.dropped],
        "scorer": cfg.scorer,
        "loss_format": default_format(cfg.scorer),
        "models": {},
    }
    common = {"cfg": cfg, "tokenizer": tokenizer, "sets": sets, "n_positions": n_positions}
    common |= {"progress": progress, "runtime": runtime, "out": out}
    jobs = [
        Job(fn=_world_model, kwargs={"name": name, "facts": facts, **common}, num_gpus=runtime.gpus())
        for name, facts in learned.items()
    ]
    world["models"] = dict(zip(learned, executor.run(jobs), strict=True))
    write_json(world, out / WORLD_FILE)
    return world


def _world_model(
    name: str,
    facts: list[Fact],
    cfg: WorldConfig,
    tokenizer,
    sets: Sets | dict[str, Sets],
    n_positions: int,
    progress: bool,
    runtime: Runtime,
    out: Path,
    trained_on: list[str] | None = None,
    data: list | None = None,
    start: str | None = None,
) -> dict:
    """Train one of the world's models on `facts` (from scratch, or implanted into the world's model
    `start`), score it on `sets` (per kind, in a two-kind world), save it: its world.json entry."""
    started = time.perf_counter()
    init = out / "checkpoints" / start if start else None
    model, history = train_world_model(
        cfg, tokenizer, facts, n_positions, name, progress, runtime, data, init
    )
    seconds = time.perf_counter() - started
    if isinstance(sets, Sets):
        accuracy = accuracy_table(model, tokenizer, sets, cfg.scorer)
    else:
        accuracy = {kind: accuracy_table(model, tokenizer, s, cfg.scorer) for kind, s in sets.items()}
    if trained_on is None:
        trained_on = ["all facts"] if name == "original" else ["near_retain", "retain"]
    save_checkpoint(
        model,
        tokenizer,
        out / "checkpoints" / name,
        {
            "made_by": "forensics world",
            "model": name,
            "from": start,
            "trained_on": trained_on,
            "settings": cfg.to_json(),
            "seed": cfg.seed,
            "history": history,
            "accuracy": accuracy,
            "seconds": round(seconds, 2),
        },
    )
    return {
        "path": f"checkpoints/{name}",
        "accuracy": accuracy,
        "epochs": history[-1]["epoch"],
        "seconds": round(seconds, 2),
    }


def _build_kinds_world(
    out: Path, cfg: WorldConfig, progress: bool, runtime: Runtime, executor: Executor
) -> dict:
    """The two-kind world (forensics.worlds.kinds): two base models pretrained from scratch (with and
    without the pretrained kind's forget facts) as parallel jobs, then three implants of the new
    domain into them, as parallel jobs."""
    controls = world_kinds.CONTROLS
    facts, roles = generate_facts(cfg)
    sets = {k: select(facts, r["forget"], r["retain"], r["near_retain"]) for k, r in roles.items()}
    everything = facts.facts()
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(everything, out / FACTS_FILE)
    pre, imp = sets["pretrained"], sets["implanted"]
    base_facts = pre.forget_facts() + list(pre.near_retain) + list(pre.retain)
    forget_a = {id(f) for f in pre.forget_facts()}
    people = [f.source.split(":", 1)[1] for f in base_facts if f.split != "retain"]
    ships = [f.source.split(":", 1)[1] for f in pre.retain]
    corpus = world_kinds.pretraining_corpus(base_facts, people, ships, cfg.scorer, cfg.seed, cfg.filler)
    base_without = [f for f in base_facts if id(f) not in forget_a]
    corpus_without = [e for f, e in corpus if id(f) not in forget_a]
    corpus = [e for _, e in corpus]
    texts = world_texts(everything) + [e.target for e in corpus]
    tokenizer, n_positions = world_tokenizer(texts, cfg.vocab_size, max(len(f.choices) for f in everything))
    common = {"cfg": cfg, "tokenizer": tokenizer, "sets": sets, "n_positions": n_positions}
    common |= {"progress": progress, "runtime": runtime, "out": out}
    cities = imp.forget_facts() + list(imp.near_retain)
    forget_c = {id(f) for f in imp.forget_facts()}
    cities_without = [f for f in cities if id(f) not in forget_c]
    plan = [
        [
            ("base", base_facts, ["pretraining corpus: A and B"], corpus, None),
            ("base_without", base_without, ["pretraining corpus: A without forget, B"], corpus_without, None),
        ],
        [
            ("original", cities, ["implant: every C fact"], base_facts, "base"),
            (controls["pretrained"], cities, ["implant: every C fact"], base_without, "base_without"),
            (controls["implanted"], cities_without, ["implant: C without forget"], base_facts, "base"),
        ],
    ]
    models: dict = {}
    for stage in plan:
        jobs = []
        for name, learn, trained_on, data, start in stage:
            if start is not None:  # an implant: the new facts, with the base's questions replayed
                data = world_kinds.implant_data(learn, data, cfg.scorer)
            own = {"name": name, "facts": learn, "trained_on": trained_on, "data": data, "start": start}
            jobs.append(Job(fn=_world_model, kwargs={**own, **common}, num_gpus=runtime.gpus()))
        models.update(zip([p[0] for p in stage], executor.run(jobs), strict=True))
    world = {
        "config": cfg.to_json(),
        "facts": FACTS_FILE,
        "kinds": {
            kind: {
                "sets": {
                    "forget": list(s.forget),
                    "near_retain": _split_names(s.near_retain),
                    "retain": _split_names(s.retain),
                },
                "control": controls[kind],
            }
            for kind, s in sets.items()
        },
        "dropped_duplicates": [],
        "scorer": cfg.scorer,
        "loss_format": default_format(cfg.scorer),
        "models": models,
    }
    write_json(world, out / WORLD_FILE)
    return world


def _split_names(facts) -> list[str]:
    return list(dict.fromkeys(f.split for f in facts))


def load_world(root: Path, kind: str | None = None) -> tuple[dict, Sets]:
    """world.json and the world's sets (of `kind`, in a two-kind world), read back from disk."""
    root = Path(root)
    path = root / WORLD_FILE
    if not path.exists():
        raise InputError(f"{path}: not found (build the world with `forensics world --out {root}`)")
    world = read_json(path)
    kinds = world.get("kinds", {})
    if kinds and kind not in kinds:
        raise InputError(
            f"{path}: a two-kind world: name one of its kinds with --kind ({', '.join(kinds)}); got {kind}"
        )
    if kind and not kinds:
        raise InputError(f"{path}: this world has no kinds (asked for '{kind}')")
    facts = load_jsonl(root / world["facts"])
    s = kinds[kind]["sets"] if kind else world["sets"]
    return world, select(facts, s["forget"], s["retain"], s["near_retain"], control=s.get("control", ()))
