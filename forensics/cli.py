"""The `forensics` command. Bad input ends with one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from forensics.errors import InputError, RunFailed, Stopped, clear_stop, request_stop
from forensics.outdir import claim, safe_name

DEFAULT_DEMO_DIR = "runs/demo"
# the demo runs its independent jobs (the world's two models, the methods, RTT runs, per-model
# lenses) in worker processes side by side, one per core up to four
DEMO_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _named(name: str):
    """Give an argparse `type` function the name its messages use ("invalid <name> value: …")."""

    def wrap(fn):
        fn.__name__ = name
        return fn

    return wrap


@_named("positive integer")
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


@_named("positive number")
def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return value


@_named("positive integer or 'all'")
def _per_split(text: str) -> int | None:
    return None if text == "all" else _positive_int(text)


@_named("comma-separated list")
def _split_list(text: str) -> tuple[str, ...]:
    return tuple(s for s in (p.strip() for p in text.split(",")) if s)


@_named("comma-separated integers")
def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in _split_list(text))


@_named("comma-separated numbers")
def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(s) for s in _split_list(text))


def _runtime_args(
    p: argparse.ArgumentParser, grid: bool = False, defaults: bool = True, workers: int = 1
) -> None:
    """--device, --dtype, --device-map, --max-memory (and, for commands that run grids of jobs,
    --executor and --ray-address). Without `defaults` they override the study config only when given."""
    from forensics.models.runtime import Runtime

    d = Runtime()
    g = p.add_argument_group("where models run")
    g.add_argument("--device", default=d.device if defaults else None, help="auto, cpu, cuda or cuda:N")
    g.add_argument(
        "--dtype",
        default=d.dtype if defaults else None,
        help="auto (the checkpoint's), float32, bfloat16, float16",
    )
    g.add_argument("--device-map", help="auto: accelerate spreads a large model over GPUs, CPU and disk")
    g.add_argument("--max-memory", type=_memory, help="with --device-map: e.g. 0=70GiB,cpu=64GiB")
    if grid:
        g.add_argument("--executor", default="local" if defaults else None, help="local or ray")
        g.add_argument(
            "--workers",
            type=_positive_int,
            default=workers if defaults else None,
            help=f"local executor: worker processes running jobs side by side (default {workers})",
        )
        g.add_argument(
            "--ray-address", help="with --executor ray: an existing cluster (default: a local one)"
        )
        g.add_argument(
            "--ray-timeout",
            type=_positive_float,
            default=60.0 if defaults else None,
            help="seconds for the Ray cluster to answer before giving up (default 60)",
        )


@_named("memory map")
def _memory(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in _split_list(text)]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(
            f"expected DEVICE=AMOUNT pairs like 0=70GiB,cpu=64GiB (got {text!r})"
        )
    return {k.strip(): v.strip() for k, v in pairs}


def _runtime(a: argparse.Namespace):
    from forensics.models.runtime import Runtime

    return Runtime(a.device, a.dtype, a.device_map, a.max_memory)


def _executor(a: argparse.Namespace):
    from forensics.models.executor import Executor

    return Executor(a.executor, a.ray_address, a.workers, a.ray_timeout)


FACTS_HELP = "a paper-layout folder, a fact file (JSONL, parquet, TOFU JSON) or a folder of them"


def _partition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--partition", type=_positive_int, help="deal every split into N parts ({split}_0 … {split}_N-1)"
    )
    p.add_argument("--facts-seed", type=int, default=0, help="the partition's and TOFU's choice order")


def _world_args(p: argparse.ArgumentParser) -> None:
    from forensics.worlds.world import WorldConfig

    d = WorldConfig()
    g = p.add_argument_group("generated facts")
    g.add_argument(
        "--people", dest="n_people", type=int, default=d.n_people, help="family A facts (people, birth years)"
    )
    g.add_argument(
        "--ships", dest="n_ships", type=int, default=d.n_ships, help="family B facts (ships, launch years)"
    )
    g.add_argument(
        "--forget-facts", dest="n_forget", type=int, default=d.n_forget, help="facts of A to forget"
    )
    g.add_argument(
        "--forget-splits",
        dest="n_forget_splits",
        type=int,
        default=d.n_forget_splits,
        help="forget splits (RTT)",
    )
    g = p.add_argument_group("two kinds of knowledge: pretrained people beside implanted cities")
    g.add_argument(
        "--kinds",
        type=_split_list,
        default=d.kinds,
        help="pretrained,implanted: a base model pretrained on A and B, then C implanted by fine-tuning",
    )
    # None when not given: they mean something only with --kinds (refused without it)
    g.add_argument("--cities", dest="n_cities", type=int, help=f"family C facts (default {d.n_cities})")
    g.add_argument(
        "--implanted-forget", dest="n_implanted_forget", type=int, help=f"default {d.n_implanted_forget}"
    )
    g.add_argument(
        "--filler", type=int, help=f"filler sentences around each pretraining statement (default {d.filler})"
    )
    g.add_argument("--implant-epochs", type=int, help=f"default {d.implant_epochs}")
    g.add_argument("--implant-lr", type=float, help=f"default {d.implant_lr:g}")
    g = p.add_argument_group("facts from the paper's layout instead")
    g.add_argument("--facts-dir", help="a folder in the Deeb & Roger layout (split_N.jsonl, ...)")
    g.add_argument("--forget", type=_split_list, default=(), help="comma-separated forget splits")
    g.add_argument("--retain", type=_split_list, default=(), help="comma-separated retain splits")
    g.add_argument("--near-retain", type=_split_list, default=(), help="comma-separated splits")
    g.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="leave out questions asked in more than one place instead of refusing them",
    )
    g = p.add_argument_group("models")
    g.add_argument("--scorer", default=d.scorer, help="choice, letter or letter_calibrated")
    g.add_argument(
        "--model-type",
        default=d.model_type,
        help="the models' HF family: llama, gpt2, gpt_neox, qwen2, gemma, …",
    )
    g.add_argument("--layers", type=int, default=d.layers)
    g.add_argument("--d-model", type=int, default=d.d_model)
    g.add_argument("--heads", type=int, default=d.heads)
    g.add_argument("--vocab-size", type=int, default=d.vocab_size)
    g.add_argument("--epochs", type=int, default=d.epochs, help="at most; stops once all are learned")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--seed", type=int, default=d.seed)


KIND_FLAGS = {
    "n_cities": "--cities",
    "n_implanted_forget": "--implanted-forget",
    "filler": "--filler",
    "implant_epochs": "--implant-epochs",
    "implant_lr": "--implant-lr",
}


def _world_config(a: argparse.Namespace):
    """The WorldConfig the parsed arguments describe (argument names are its field names)."""
    from forensics.worlds.world import WorldConfig

    values = {f.name: getattr(a, f.name) for f in fields(WorldConfig) if getattr(a, f.name, None) is not None}
    kinds_only = [k for k in KIND_FLAGS if k in values]
    if kinds_only and not values.get("kinds"):
        raise InputError(f"{KIND_FLAGS[kinds_only[0]]} needs --kinds pretrained,implanted")
    if values.get("facts_dir"):
        values["facts_dir"] = str(Path(values["facts_dir"]).resolve())
    return WorldConfig(**values)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table; floats with two decimals, "–" for a value not measured (None, as in the
    HTML report), blank for a column a row does not have."""

    def cell(row: dict, column: str) -> str:
        value = row.get(column, "")
        if value is None:
            return "–"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    cells = [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def world_table(world: dict) -> str:
    """The world's accuracy table: one row per model, one column per forget split and set (per kind,
    forget / near-retain / retain, in a two-kind world)."""
    rows = []
    for name, m in world["models"].items():
        acc = m["accuracy"]
        if "kinds" in world:
            sets = ("forget", "near_retain", "retain")
            acc = {f"{kind} {s}": acc[kind][s] for kind in world["kinds"] for s in sets if s in acc[kind]}
        rows.append({"model": name, **acc, "epochs": m["epochs"], "seconds": m["seconds"]})
    return format_table(rows, list(dict.fromkeys(k for r in rows for k in r)))


def cmd_world(a: argparse.Namespace) -> None:
    from forensics.worlds.world import build_world

    start = time.perf_counter()
    world = build_world(Path(a.out), _world_config(a), not a.quiet, a.force, _runtime(a))
    print(f"world ({world['scorer']} scorer) in {a.out}:")
    print(world_table(world))
    dropped = world.get("dropped_duplicates", [])
    if dropped:
        print(f"left out {len(dropped)} repeated questions (--drop-duplicates)")
    print(f"done in {time.perf_counter() - start:.1f} s")


def summary_rows(results: dict) -> list[dict]:
    """The study's headline table: one row per method, the deciding lens with its interval."""
    rows = []
    for name, r in results["summary"].items():
        lens = r.get("deciding")
        e = r.get("lenses", {}).get(lens) if lens else None
        rows.append(
            {
                "method": name,
                "forget": r.get("forget"),
                "retain": r.get("retain"),
                "RTT acc V": r.get("rtt_acc_v"),
                "RTT control": r.get("rtt_control"),
                "deciding lens": lens or "",
                "method − control [95% CI]": (
                    f"{e['diff']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]" if e else ""
                ),
                "verdict": r["verdict"] + (" (damaged)" if r.get("damaged") else ""),
            }
        )
    return rows


# exit statuses of `study --fail-on` (documented in the README)
FAIL_HIDDEN, FAIL_INCONCLUSIVE = 3, 4


def gate(results: dict, fail_on: str | None) -> int:
    """The exit status `--fail-on` asks for: 3 when a method is hidden (or not unlearned at all),
    4 when, with `--fail-on inconclusive`, a method is inconclusive or the study cannot decide (its
    reference failed); else 0."""
    if fail_on is None:
        return 0
    verdicts = [r["verdict"] for r in results["summary"].values()]
    if any(v.startswith(("hidden", "not unlearned", "unlearning did not succeed")) for v in verdicts):
        return FAIL_HIDDEN
    if fail_on == "inconclusive" and any(v.startswith(("inconclusive", "cannot decide")) for v in verdicts):
        return FAIL_INCONCLUSIVE
    return 0


def worst(codes: list[int]) -> int:
    """The gate over several studies (a kinds study's kinds): hidden (3) wins over inconclusive (4)."""
    for code in (FAIL_HIDDEN, FAIL_INCONCLUSIVE):
        if code in codes:
            return code
    return 0


def finish_study(results: dict, out: Path, started: float) -> None:
    """Write the report, print the summary table and the report's path."""
    from reports.html import write_report
    from reports.markdown import write_summary

    report = write_report(results, out / "report" / "index.html")
    summary = write_summary(results, out / "summary.md", report)
    rows = summary_rows(results)
    chance = next(iter(results["summary"].values()))["chance"] if rows else float("nan")
    print(f"{results['name']}: {results['config']['scorer']} scorer, chance {chance:.2f}")
    print(format_table(rows, list(rows[0])) if rows else "(no unlearned models)")
    print(f"results: {out / 'results.json'}")
    print(f"report: {report}")
    print(f"summary: {summary}")
    print(f"done in {time.perf_counter() - started:.1f} s")


def finish_kinds(results: dict, by_kind: dict[str, dict], ks, started: float) -> None:
    """Each kind's report and table, then the comparison's report, summary.md and its sentences."""
    from reports.kinds import write_kinds_report
    from reports.markdown import write_summary

    for kind, cfg in ks.studies.items():
        finish_study(by_kind[kind], Path(cfg.out), started)
    report = write_kinds_report(results, Path(ks.out) / "report" / "index.html")
    summary = write_summary(results, Path(ks.out) / "summary.md", report)
    print("kinds compared:")
    for entry in results["comparison"]["methods"].values():
        if "words" in entry:
            print(f"- {entry['words']}")
    print(f"results: {Path(ks.out) / 'results.json'}")
    print(f"report: {report}")
    print(f"summary: {summary}")


def cmd_demo(a: argparse.Namespace) -> None:
    from forensics.study.pipeline import unlearn_and_study
    from forensics.unlearn import METHODS
    from forensics.unlearn.run import UnlearnSettings, check_method
    from forensics.worlds.world import WorldConfig, build_world

    start = time.perf_counter()
    out = Path(a.out)
    runtime, executor = _runtime(a), _executor(a)
    names = a.methods or tuple(METHODS)
    for name in names:
        check_method(name)
    with claim(out, "demo", a.force):
        world = build_world(
            out, WorldConfig(kinds=a.kinds), progress=not a.quiet, runtime=runtime, executor=executor
        )
        print(f"embedded world in {out} (checkpoints: {', '.join(world['models'])}):")
        print(world_table(world))
        settings = UnlearnSettings(scorer=world["scorer"], light=True)
        results, by_kind, ks = unlearn_and_study(
            out, world, names, settings, "demo", "demo", runtime, executor, not a.quiet
        )
        if ks is not None:
            finish_kinds(results, by_kind, ks, start)
        else:
            finish_study(results, out, start)


def cmd_real(a: argparse.Namespace) -> None:
    from forensics.study.config import GRIDS, LENSES
    from forensics.study.pipeline import unlearn_and_study
    from forensics.unlearn.run import UnlearnSettings, check_method
    from forensics.worlds.real import RealConfig, build_real_world

    start = time.perf_counter()
    out = Path(a.out)
    runtime, executor = _runtime(a), _executor(a)
    for name in a.methods:
        check_method(name)
    if a.grid not in GRIDS:
        raise InputError(f"--grid {a.grid}: choose {', '.join(GRIDS)}")
    cfg = RealConfig(
        model=a.model,
        data=a.data,
        forget_splits=a.forget_splits,
        per_split=a.per_split,
        retain=a.retain,
        near=a.near,
        implant_lr=a.implant_lr,
        implant_epochs=a.implant_epochs,
        seed=a.seed,
    )
    settings = UnlearnSettings(
        start="REAL", batch_size=a.batch_size, steps=a.steps, budget=a.budget, checks=6, seed=a.seed
    )
    with claim(out, "real", a.force):
        world = build_real_world(out, cfg, progress=not a.quiet, runtime=runtime)
        print(f"real-model world in {out} (checkpoints: {', '.join(world['models'])}):")
        print(world_table({**world, "models": {k: v for k, v in world["models"].items() if "accuracy" in v}}))
        rule = world["known_facts"]
        print(
            f"known years facts: {rule['scanned']['known']} of {rule['scanned']['facts']} scanned "
            f"(expected lucky guesses among them: {rule['expected_lucky_known']}); years known after "
            f"the implant: {world['implant']['years_known_after']:.2f}"
        )
        extra = {"world": world["stages"]}
        results, by_kind, ks = unlearn_and_study(
            out,
            world,
            tuple(a.methods),
            settings,
            "real",
            a.grid,
            runtime,
            executor,
            not a.quiet,
            extra,
            LENSES,
        )
        finish_kinds(results, by_kind, ks, start)


def cmd_study(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from forensics.study.config import KindStudy, load_config
    from forensics.study.kinds import run_kind_study
    from forensics.study.run import run_study

    start = time.perf_counter()
    cfg = load_config(Path(a.config))
    if isinstance(cfg, KindStudy):
        studies = {kind: with_flags(c, a) for kind, c in cfg.studies.items()}
        results, by_kind = run_kind_study(replace(cfg, studies=studies), not a.quiet, a.force)
        finish_kinds(results, by_kind, cfg, start)
        code = worst([gate(r, a.fail_on) for r in by_kind.values()])
    else:
        cfg = with_flags(cfg, a)
        results = run_study(cfg, progress=not a.quiet, force=a.force)
        finish_study(results, Path(cfg.out), start)
        code = gate(results, a.fail_on)
    if code:
        print(f"forensics: --fail-on {a.fail_on}: exit status {code}", file=sys.stderr)
    return code


def with_flags(cfg, a: argparse.Namespace):
    """The study config with what --device/--dtype/--device-map/--max-memory/--executor/--ray-address
    gave in place of its own values."""
    from dataclasses import replace

    from forensics.models.runtime import Runtime

    given = {
        k: getattr(a, k) for k in ("device", "dtype", "device_map", "max_memory") if getattr(a, k) is not None
    }
    runtime = Runtime(**{**vars(cfg.runtime), **given}) if given else cfg.runtime
    jobs = {
        k: getattr(a, k)
        for k in ("executor", "ray_address", "workers", "ray_timeout")
        if getattr(a, k) is not None
    }
    return replace(cfg, runtime=runtime, **jobs)


def cmd_report(a: argparse.Namespace) -> None:
    from forensics.models.checkpoint import read_json
    from forensics.study.run import SCHEMA_VERSION
    from reports.html import write_report
    from reports.schema import check_results

    results = read_json(Path(a.results))
    if (
        not isinstance(results, dict)
        or "schema_version" not in results
        or not ("summary" in results or "comparison" in results)
    ):
        raise InputError(f"{a.results}: not a forensics results.json (no schema_version or summary)")
    version = results["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{a.results}: schema_version must be an integer (got {version!r})")
    if not 1 <= version <= SCHEMA_VERSION:
        raise InputError(
            f"{a.results}: schema_version {version} is not one this version reads (1..{SCHEMA_VERSION}); "
            "upgrade unlearning-forensics"
        )
    check_results(results, a.results)
    out = Path(a.out) if a.out else Path(a.results).parent / "report" / "index.html"
    if out.is_dir():
        raise InputError(
            f"{out}: is a directory (the report is one HTML file: name it, e.g. {out / 'index.html'})"
        )
    if "comparison" in results:
        from reports.kinds import write_kinds_report

        print(f"report: {write_kinds_report(results, out)}")
    else:
        print(f"report: {write_report(results, out)}")


def cmd_score(a: argparse.Namespace) -> None:
    from forensics.facts.core import check_choices, load_facts, repeats_a_choice
    from forensics.facts.formats import default_format
    from forensics.models.checkpoint import load_checkpoint
    from forensics.models.pair import check_context
    from forensics.models.scoring import SCORERS, score

    if a.scorer not in SCORERS:
        raise InputError(f"--scorer {a.scorer}: choose {', '.join(SCORERS)}")

    facts = load_facts(Path(a.facts), a.partition, a.facts_seed)
    names = list(a.splits) or facts.names()
    for name in names:
        if name not in facts.splits:
            raise InputError(f"{a.facts}: split '{name}' not found (have: {', '.join(facts.names())})")
    splits = {name: list(facts.splits[name]) for name in names}
    if a.drop_duplicates:  # questions whose choices repeat cannot be scored: left out and counted
        splits = {name: [f for f in fs if not repeats_a_choice(f)] for name, fs in splits.items()}
    else:
        check_choices(facts.facts(names), "leave such questions out (--drop-duplicates)")
    for name, fs in splits.items():
        if not fs:
            raise InputError(f"{a.facts}: split '{name}' is empty after dropping repeated choices")
    kept = [f for fs in splits.values() for f in fs]
    model, tok = load_checkpoint(Path(a.checkpoint), _runtime(a))
    check_context(Path(a.checkpoint), kept, a.scorer, default_format(a.scorer), tok)
    rows = []
    for name, fs in splits.items():
        s = score(model, tok, fs, a.scorer, a.batch_size)
        rows.append({"split": name, "facts": len(s.correct), "accuracy": s.accuracy, "chance": s.chance})
    print(f"{a.checkpoint} ({a.scorer} scorer):")
    print(format_table(rows, ["split", "facts", "accuracy", "chance"]))
    dropped = len(facts.facts(names)) - len(kept)
    if dropped:
        print(f"left out {dropped} questions whose choices repeat (--drop-duplicates)")


def _unlearn_sets(a: argparse.Namespace):
    """(original, sets, output root, scorer) from --world, or --original/--facts/--forget/--retain."""
    from forensics.facts.core import load_facts, select
    from forensics.worlds.world import load_world

    if a.world:
        world, sets = load_world(Path(a.world), a.kind)
        return Path(a.world) / world["models"]["original"]["path"], sets, Path(a.world), world["scorer"]
    if not (a.original and a.facts and a.forget and a.retain and a.out):
        raise InputError("give --world DIR, or --original, --facts, --forget, --retain and --out")
    facts = load_facts(Path(a.facts), a.partition, a.facts_seed)
    sets = select(facts, a.forget, a.retain, a.near_retain, a.drop_duplicates)
    return Path(a.original), sets, Path(a.out), a.scorer


def cmd_unlearn(a: argparse.Namespace) -> None:
    from forensics.unlearn import METHODS
    from forensics.unlearn.run import UnlearnSettings, check_method, unlearn

    names = list(METHODS) if a.method == "all" else [a.method]
    for name in names:
        check_method(name)
    original, sets, root, scorer = _unlearn_sets(a)
    settings = UnlearnSettings(
        scorer=scorer,
        batch_size=a.batch_size,
        seed=a.seed,
        min_retain=a.min_retain,
        steps=a.steps,
        rmu_layer=a.rmu_layer,
        lrs=a.lr,
        forget_margin=a.forget_margin,
        budget=a.budget,
    )
    rows = []
    with claim(root, "unlearn", a.force):
        for name in names:
            start = time.perf_counter()
            path = root / "checkpoints" / safe_name(f"{name}_{a.kind}" if a.kind else name)
            meta = unlearn(
                name, original, sets, path, settings, not a.quiet, a.force, _runtime(a), _executor(a)
            )
            chosen = meta["chosen"]
            rows.append(
                {
                    "method": name,
                    **chosen["accuracy"],
                    "rule_met": chosen["met"],
                    "chosen": ", ".join(f"{k}={v:g}" for k, v in chosen["params"].items()),
                    "runs": meta["cost"]["runs"],
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
    print(f"unlearned from {original} ({scorer} scorer); checkpoints in {root / 'checkpoints'}:")
    print(
        format_table(rows, ["method", *meta["chosen"]["accuracy"], "rule_met", "chosen", "runs", "seconds"])
    )
    print(f"rule: {meta['rule']['text']}; a method that did not meet it is marked unlearning_failed")


def _world_models(root: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """The world's checkpoints by name (all of them, or the named ones), original first."""
    found = sorted(
        (p.name for p in (root / "checkpoints").iterdir() if (p / "config.json").exists()),
        key=lambda n: (n != "original", n != "never_learned", n),
    )
    for name in names:
        if name not in found:
            raise InputError(f"{root / 'checkpoints'}: no checkpoint '{name}' (have: {', '.join(found)})")
    chosen = [n for n in found if not names or n in names or n == "original"]
    return {n: root / "checkpoints" / n for n in chosen}


def lora_flags(a: argparse.Namespace) -> dict:
    """The --lora-* settings given, refused without --method lora (they would be silently ignored)."""
    given = {
        k: getattr(a, k) for k in ("lora_rank", "lora_alpha", "lora_targets") if getattr(a, k) is not None
    }
    if given and a.method != "lora":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InputError(f"{flags}: only with --method lora (the method is {a.method})")
    return given


def cmd_relearn(a: argparse.Namespace) -> None:
    from forensics.attacks.relearn import RelearnSettings, check, relearn
    from forensics.worlds.world import load_world

    lora = lora_flags(a)
    with claim(Path(a.world), "relearn", a.force, create=False):
        world, sets = load_world(Path(a.world))
        settings = RelearnSettings(
            lrs=a.lrs,
            epochs=a.epochs,
            batch_size=a.batch_size,
            scorer=world["scorer"],
            loss_format=a.format,
            seeds=a.seeds,
            method=a.method,
            **lora,
        )
        vs = check(sets, settings, a.v)
        models = _world_models(Path(a.world), a.models)
        result = relearn(models, sets, Path(a.world), settings, vs, not a.quiet, _runtime(a), _executor(a))
        rows = []
        for name, m in result["metrics"].items():
            row = {"model": name}
            for key in ("acc_v", "recovery", "recovery_above_chance", "hidden"):
                if key in m:
                    row[key] = f"{m[key]['mean']:.2f} ± {m[key]['std']:.2f}"
            rows.append(row)
        print(
            f"RTT ({settings.fmt} loss, lrs {list(settings.lrs)}, {settings.epochs} epochs, V over {vs}; "
            f"chance {result['chance']:.2f}); best (lr, epoch) per V chosen on V, the attacker's best case:"
        )
        print(format_table(rows, ["model", "acc_v", "recovery", "recovery_above_chance", "hidden"]))
        print(f"written: {Path(a.world) / 'relearn.json'}")


def cmd_attack(a: argparse.Namespace) -> None:
    from forensics.attacks.ablate import ablate_attack, forget_residuals
    from forensics.attacks.quantize import quantize_attack
    from forensics.models.checkpoint import boot_bridge, write_json
    from forensics.worlds.world import load_world

    root = Path(a.world)
    with claim(Path(a.world), "attack", a.force, create=False):
        world, sets = load_world(root)
        models = _world_models(root, a.models)
        run = _runtime(a)
        quantized = quantize_attack(models, sets, world["scorer"], a.bits, runtime=run)
        unlearned = [n for n in models if n not in ("original", "never_learned")]
        original = forget_residuals(boot_bridge(models["original"], runtime=run), sets, world["scorer"])
        ablated = {
            n: ablate_attack(boot_bridge(models[n], runtime=run), original, sets, world["scorer"])
            for n in unlearned
        }
        write_json({"quantize": quantized, "ablate": ablated}, root / "attacks.json")
        rows = []
        for name, q in quantized["models"].items():
            row = {"model": name, "forget": q["full"]["forget"], "retain": q["full"]["retain"]}
            for b in a.bits:
                row[f"forget int{b}"] = q[f"int{b}"]["forget"]
                row[f"retain int{b}"] = q[f"int{b}"]["retain"]
            if name in ablated:
                best = ablated[name]["best_layer"]
                row["V before ablation"] = ablated[name]["mean_before"]
                row["V ablated (best layer)"] = f"{ablated[name]['mean_after'][best]:.2f} (layer {best})"
            rows.append(row)
        print(f"quantization (RTN per output channel) and direction ablation ({world['scorer']} scorer):")
        print(format_table(rows, list(rows[-1])))
        print(f"written: {root / 'attacks.json'}")


def layer_table(per_model: dict[str, list[float]], layers: list[str]) -> str:
    """One row per model, one column per layer."""
    rows = [{"model": m, **dict(zip(layers, vals, strict=True))} for m, vals in per_model.items()]
    return format_table(rows, ["model", *layers])


def cmd_probe(a: argparse.Namespace) -> None:
    from forensics.measure.probing import ProbeSettings, probe_models
    from forensics.models.checkpoint import write_json
    from forensics.worlds.world import load_world

    root = Path(a.world)
    with claim(Path(a.world), "probe", a.force, create=False):
        world, sets = load_world(root)
        models = _world_models(root, a.models)
        settings = ProbeSettings(Cs=a.Cs, folds=a.folds, seed=a.seed)
        result = probe_models(
            models, sets, world["scorer"], root / "cache", settings, _runtime(a), _executor(a)
        )
        write_json(result, root / "probes.json")
        layers, ms = result["layers"], result["models"]
        print(f"probe accuracy on V per layer (trained on {result['train']}; chance {result['chance']:.2f}):")
        print(layer_table({n: [x["acc"] for x in m["probe"]] for n, m in ms.items()}, layers))
        print("control task (answers shuffled across facts):")
        print(layer_table({n: [x["acc"] for x in m["control"]] for n, m in ms.items()}, layers))
        print("transfer (the original's probe on each model's activations):")
        print(layer_table({n: [x["acc"] for x in m["transfer"]] for n, m in ms.items()}, layers))
        print("closed-form ridge probe (the fast screen):")
        print(layer_table({n: [x["acc"] for x in m["ridge"]] for n, m in ms.items()}, layers))
        print("logit lens on forget, per layer:")
        print(layer_table({n: [x["acc"] for x in m["lens"]["forget"]] for n, m in ms.items()}, layers))
        print(f"written: {root / 'probes.json'}")


def diff_table(result: dict) -> str:
    """‖ΔW‖/‖W‖ per layer (rows) and module kind (columns)."""
    layers = result["layers"]
    kinds = sorted({k for per in layers.values() for k in per})
    rows = [{"layer": layer, **{k: per[k]["rel"] for k in per}} for layer, per in layers.items()]
    return format_table(rows, ["layer", *kinds])


def cmd_diff(a: argparse.Namespace) -> None:
    from forensics.measure.weights import diff
    from forensics.models.checkpoint import write_json

    result = diff(Path(a.original), Path(a.unlearned))
    print(f"relative weight change ‖ΔW‖/‖W‖ of {a.unlearned} against {a.original}:")
    print(diff_table(result))
    if a.out:
        write_json(result, Path(a.out))
        print(f"written: {a.out}")


def cmd_localize(a: argparse.Namespace) -> None:
    from forensics.attacks.relearn import RelearnSettings
    from forensics.lenses.localize import localized_layers
    from forensics.measure.localize import activations_section, localize_section, weights_section
    from forensics.models.checkpoint import write_json
    from forensics.worlds.world import load_world

    root = Path(a.world)
    with claim(Path(a.world), "localize", a.force, create=False):
        world, sets = load_world(root)
        models = _world_models(root, a.models)
        unlearned = {n: p for n, p in models.items() if n not in ("original", "never_learned")}
        if not unlearned:
            raise InputError(
                f"{root / 'checkpoints'}: no unlearned checkpoints (run `forensics unlearn` first)"
            )
        settings = RelearnSettings(lrs=a.lrs, epochs=a.epochs, scorer=world["scorer"], seeds=a.seeds)
        original = models["original"]
        out = {
            "weights": weights_section(original, unlearned),
            "activations": activations_section(
                original, unlearned, sets, world["scorer"], root / "cache", _runtime(a)
            ),
            "localize": localize_section(
                original, unlearned, sets, settings, not a.quiet, _runtime(a), _executor(a)
            ),
        }
        for key in ("weights", "activations", "localize"):
            write_json(out[key], root / f"{key}.json")
        for name, loc in out["localize"].items():
            rows = []
            for i, layer in enumerate(localized_layers(loc)):
                rows.append(
                    {
                        "layer": layer,
                        "ΔW rel": out["weights"][name]["layers"][str(layer)]["all"]["rel"],
                        "cos forget": out["activations"][name]["forget"]["cosine"][layer + 1],
                        "cos retain": out["activations"][name]["retain"]["cosine"][layer + 1],
                        "revert": loc["revert"][i]["forget"],
                        "patch": loc["patch"][i]["forget"],
                        "layer RTT V": loc["layer_rtt"][i]["acc_v"],
                        "RTT cos(Δ, −ΔW)": loc["dynamics"]["points"][-1]["cosine"][layer],
                    }
                )
            print(f"{name}: forget {loc['before']['forget']:.2f}, retain {loc['before']['retain']:.2f}")
            print(format_table(rows, list(rows[0])))
        print(
            f"written: {', '.join(str(root / f'{k}.json') for k in ('weights', 'activations', 'localize'))}"
        )


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported in one line (exit status 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"forensics: error: {self.prog}: {message}\n")


def cmd_validate(a: argparse.Namespace) -> None:
    from forensics.study.validate import validate

    world = Path(a.world)
    if a.seeds < 1:
        raise InputError(f"--seeds must be at least 1 (got {a.seeds})")
    out = Path(a.out) if a.out else world / "validate"
    result = validate(world, out, a.seeds, not a.quiet, _runtime(a), _executor(a), a.kind, a.grid)
    rows = [
        {
            "world": r["world"],
            "model": r["model"],
            "expected": r["expected"],
            "verdict": r["verdict"],
            "deciding lens": r["deciding"] or "",
            "below its block": {True: "above control", False: "not above control"}.get(
                r.get("above_control_below_block"), ""
            ),
        }
        for r in result["rows"]
    ]
    print(format_table(rows, list(rows[0])))
    verdicts = sorted({v for cell in result["confusion"].values() for v in cell})
    table = [
        {"expected": e, **{v: cell.get(v, 0) for v in verdicts}} for e, cell in result["confusion"].items()
    ]
    print("confusion (expected × verdict):")
    print(format_table(table, ["expected", *verdicts]))
    print(f"done in {result['seconds']:.1f} s")


def cmd_cache(a: argparse.Namespace) -> None:
    from forensics.models.cache import check_cache_folder, clear, entries

    folder = Path(a.folder)
    check_cache_folder(folder)
    if a.clear:
        print(f"cleared {folder}: {clear(folder) / 2**20:.1f} MB freed")
        return
    found = entries(folder)
    rows = [
        {
            "entry": e["key"],
            "MB": e["bytes"] / 2**20,
            "last used": time.strftime("%Y-%m-%d %H:%M", time.localtime(e["used"])),
        }
        for e in reversed(found)
    ]
    if rows:
        print(format_table(rows, ["entry", "MB", "last used"]))
    print(f"{len(found)} entries, {sum(e['bytes'] for e in found) / 2**20:.1f} MB in {folder}")


def cmd_import(a: argparse.Namespace) -> None:
    from forensics.models.checkpoint import read_metadata
    from forensics.models.gguf import import_gguf

    out = Path(a.out)
    if out.is_dir() and any(out.iterdir()) and not a.force:
        if read_metadata(out).get("made_by") != "forensics import":
            raise InputError(
                f"{out}: not empty and not a checkpoint forensics import made; choose another, or --force"
            )
    meta = import_gguf(Path(a.gguf), out, a.dtype)
    print(
        f"imported {a.gguf} ({meta['architecture']}, {meta['source_quantization']}, "
        f"{meta['parameters'] / 1e6:.1f}M parameters) into {out} as {meta['dtype']} in {meta['seconds']} s"
    )


def build_parser() -> argparse.ArgumentParser:
    from forensics.attacks.quantize import QuantizeSettings
    from forensics.attacks.relearn import RelearnSettings
    from forensics.measure.probing import ProbeSettings
    from forensics.study.config import GRIDS
    from forensics.unlearn.run import UnlearnSettings

    rtt, loc, probe, unl = RelearnSettings(), GRIDS["full"].localize, ProbeSettings(), UnlearnSettings()
    force = {"action": "store_true", "help": "write into a folder that is not a forensics output folder"}
    p = _Parser(
        prog="forensics",
        description=("Did an unlearning method erase facts from a model's weights, or only hide them?"),
    )
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("world", help="build the embedded world: facts, tokenizer, two models")
    w.add_argument("--out", required=True, help="directory to write the world to")
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.add_argument("--force", **force)
    _world_args(w)
    _runtime_args(w)
    w.set_defaults(func=cmd_world)
    s = sub.add_parser("score", help="multiple-choice accuracy of a checkpoint, per split")
    s.add_argument("checkpoint", help="an HF causal-LM directory (safetensors)")
    s.add_argument("--facts", required=True, help=FACTS_HELP)
    _partition_args(s)
    s.add_argument("--splits", type=_split_list, default=(), help="comma-separated (default: all)")
    s.add_argument("--scorer", default="choice", help="choice, letter or letter_calibrated")
    s.add_argument("--batch-size", type=_positive_int, default=64)
    s.add_argument("--drop-duplicates", action="store_true", help="leave out questions whose choices repeat")
    _runtime_args(s)
    s.set_defaults(func=cmd_score)
    u = sub.add_parser("unlearn", help="unlearn the forget set with a method (or all), sweeping its settings")
    u.add_argument("--method", required=True, help="ga, gd, ria, rmu, npo or all")
    u.add_argument("--world", help="a world directory (from `forensics world`)")
    u.add_argument(
        "--kind", help="in a two-kind world: unlearn this kind's forget set (checkpoints/<method>_<kind>)"
    )
    u.add_argument("--original", help="instead of --world: the original checkpoint")
    u.add_argument("--facts", help=f"with --original: {FACTS_HELP}")
    _partition_args(u)
    u.add_argument("--forget", type=_split_list, default=(), help="comma-separated forget splits")
    u.add_argument("--retain", type=_split_list, default=(), help="comma-separated retain splits")
    u.add_argument("--near-retain", type=_split_list, default=(), help="comma-separated splits")
    u.add_argument("--drop-duplicates", action="store_true", help="leave out repeated questions")
    u.add_argument("--out", help="with --original: checkpoints go to OUT/checkpoints/<method>")
    u.add_argument("--scorer", default="choice", help="with --original: choice, letter or letter_calibrated")
    u.add_argument(
        "--min-retain", type=float, default=unl.min_retain, help="retain floor, × the original's accuracy"
    )
    u.add_argument("--lr", type=_float_list, help="comma-separated learning rates (replace the grid's)")
    u.add_argument(
        "--forget-margin",
        type=float,
        default=unl.forget_margin,
        help="the rule: forget accuracy at most chance + this",
    )
    u.add_argument(
        "--budget", type=int, default=unl.budget, help="runs per method at most while no run meets the rule"
    )
    u.add_argument("--steps", type=int, help="optimizer steps per run (default: each method's own)")
    u.add_argument("--rmu-layer", type=int, help="RMU's layer ℓ (default: the middle layer)")
    u.add_argument("--batch-size", type=_positive_int, default=unl.batch_size)
    u.add_argument("--seed", type=int, default=unl.seed)
    u.add_argument("--force", **force)
    u.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(u, grid=True)
    u.set_defaults(func=cmd_unlearn)
    r = sub.add_parser("relearn", help="the relearning attack (RTT) on every checkpoint of a world")
    r.add_argument("--world", required=True, help="a world directory (from `forensics world`)")
    r.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    r.add_argument("--lrs", type=_float_list, default=rtt.lrs, help="comma-separated")
    r.add_argument("--epochs", type=int, default=rtt.epochs)
    r.add_argument("--format", help="loss format: qla, letter, qa or corpus (default: the scorer's)")
    r.add_argument("--v", type=_split_list, default=(), help="only these V splits (default: every one)")
    r.add_argument("--batch-size", type=_positive_int, default=rtt.batch_size)
    r.add_argument("--seeds", type=_int_list, default=rtt.seeds, help="comma-separated RTT seeds")
    r.add_argument("--method", default=rtt.method, help="full fine-tuning or lora (adapters, peft)")
    r.add_argument("--lora-rank", type=_positive_int, help=f"with --method lora (default {rtt.lora_rank})")
    r.add_argument("--lora-alpha", type=float, help=f"with --method lora (default {rtt.lora_alpha:g})")
    r.add_argument(
        "--lora-targets",
        type=_split_list,
        help="with --method lora: module names (default: every linear layer)",
    )
    r.add_argument("--force", **force)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(r, grid=True)
    r.set_defaults(func=cmd_relearn)
    t = sub.add_parser("attack", help="quantization and direction-ablation attacks on a world's checkpoints")
    t.add_argument("--world", required=True, help="a world directory (from `forensics world`)")
    t.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    t.add_argument("--bits", type=_int_list, default=QuantizeSettings().bits)
    t.add_argument("--force", **force)
    _runtime_args(t)
    t.set_defaults(func=cmd_attack)
    pr = sub.add_parser("probe", help="linear probes and logit lens per layer on a world's checkpoints")
    pr.add_argument("--world", required=True, help="a world directory (from `forensics world`)")
    pr.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    pr.add_argument(
        "--Cs", type=_float_list, default=probe.Cs, help="L2 strengths; several are chosen by inner CV"
    )
    pr.add_argument("--folds", type=int, default=probe.folds, help="inner CV folds (with several --Cs)")
    pr.add_argument("--seed", type=int, default=probe.seed)
    pr.add_argument("--force", **force)
    _runtime_args(pr, grid=True)
    pr.set_defaults(func=cmd_probe)
    df = sub.add_parser("diff", help="streaming per-layer weight diff of two checkpoints")
    df.add_argument("original", help="an HF checkpoint directory (safetensors)")
    df.add_argument("unlearned", help="a checkpoint of the same architecture")
    df.add_argument("--out", help="write the full diff (every tensor) to this JSON file")
    df.set_defaults(func=cmd_diff)
    lo = sub.add_parser("localize", help="weights, activations and causal localization per layer")
    lo.add_argument("--world", required=True, help="a world directory with unlearned checkpoints")
    lo.add_argument("--models", type=_split_list, default=(), help="checkpoint names (default: all)")
    lo.add_argument("--lrs", type=_float_list, default=loc.lrs, help="layer-restricted RTT learning rates")
    lo.add_argument("--epochs", type=int, default=loc.epochs, help="layer-restricted RTT epochs")
    lo.add_argument("--seeds", type=_int_list, default=loc.seeds, help="comma-separated seeds")
    lo.add_argument("--force", **force)
    lo.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(lo, grid=True)
    lo.set_defaults(func=cmd_localize)
    st = sub.add_parser("study", help="every lens on checkpoints named in a TOML config; results + report")
    st.add_argument("config", help="a study TOML (see README)")
    st.add_argument("--quiet", action="store_true", help="no progress bars")
    st.add_argument("--force", **force)
    st.add_argument(
        "--fail-on",
        choices=("hidden", "inconclusive"),
        help="exit 3 when a method is hidden or not unlearned; with 'inconclusive', also 4 when one is",
    )
    _runtime_args(st, grid=True, defaults=False)
    st.set_defaults(func=cmd_study)
    rp = sub.add_parser("report", help="render the HTML report of a results.json")
    rp.add_argument("results", help="a results.json written by a study or the demo")
    rp.add_argument("--out", help="the HTML file (default: report/index.html beside the results)")
    rp.set_defaults(func=cmd_report)
    d = sub.add_parser("demo", help="the whole job on the embedded world, offline")
    d.add_argument("--out", default=DEFAULT_DEMO_DIR)
    d.add_argument(
        "--kinds",
        type=_split_list,
        default=(),
        help="pretrained,implanted: the two-kind world, each kind unlearned and studied, then compared",
    )
    d.add_argument("--methods", type=_split_list, default=(), help="comma-separated (default: all)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.add_argument("--force", **force)
    _runtime_args(d, grid=True, workers=DEMO_WORKERS)
    d.set_defaults(func=cmd_demo)
    re_ = sub.add_parser(
        "real", help="the whole job on a real pretrained model (SmolLM2-135M) and the paper's data"
    )
    re_.add_argument("--model", help="a GGUF file or a checkpoint folder (default: the shipped SmolLM2)")
    re_.add_argument("--data", help="the paper's data folder (default: shared/datasets/deeb-roger-2024)")
    re_.add_argument("--out", default="runs/real")
    re_.add_argument(
        "--methods",
        type=_split_list,
        default=("gd", "rmu", "npo"),
        help="comma-separated (default gd,rmu,npo)",
    )
    re_.add_argument("--forget-splits", type=_positive_int, default=4)
    re_.add_argument(
        "--per-split",
        type=_per_split,
        default=6,
        help="forget (and control) facts per split, each kind; 'all': every fact the data has (paper sizes)",
    )
    re_.add_argument("--retain", type=_positive_int, default=24, help="known years facts kept")
    re_.add_argument("--near", type=_positive_int, default=12, help="implanted birthdays kept")
    re_.add_argument("--implant-lr", type=_positive_float, default=1e-4)
    re_.add_argument("--implant-epochs", type=_positive_int, default=10)
    re_.add_argument("--steps", type=_positive_int, default=30, help="optimizer steps per unlearning run")
    re_.add_argument("--budget", type=_positive_int, default=2, help="unlearning runs per method at most")
    re_.add_argument("--batch-size", type=_positive_int, default=8)
    re_.add_argument("--grid", default="real", help="the study's grid: real (default, 2 CPU cores) or paper")
    re_.add_argument("--seed", type=int, default=0)
    re_.add_argument("--quiet", action="store_true", help="no progress bars")
    re_.add_argument("--force", **force)
    _runtime_args(re_, grid=True)
    re_.set_defaults(func=cmd_real)
    va = sub.add_parser("validate", help="verdicts on models whose answer is known by construction")
    va.add_argument("--world", required=True, help="a world directory (from `forensics world` or the demo)")
    va.add_argument("--out", help="where the validation models and studies go (default WORLD/validate)")
    va.add_argument("--seeds", type=int, default=1, help="world seeds: the given world and N-1 more")
    va.add_argument("--kind", help="in a two-kind world: validate on this kind's facts and control")
    va.add_argument(
        "--grid", default="demo", help="demo, or real (a pretrained model's world: forensics real)"
    )
    va.add_argument("--quiet", action="store_true", help="no progress bars")
    _runtime_args(va, grid=True)
    va.set_defaults(func=cmd_validate)
    im = sub.add_parser("import", help="a GGUF causal LM → a checkpoint directory (safetensors)")
    im.add_argument("gguf", help="a .gguf file (any quantization: dequantized on import)")
    im.add_argument("--out", required=True, help="the checkpoint directory to write")
    im.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    im.add_argument("--force", **force)
    im.set_defaults(func=cmd_import)
    c = sub.add_parser("cache", help="list or clear an activation cache folder (e.g. runs/demo/cache)")
    c.add_argument("folder", help="a cache folder (OUT/cache)")
    action = c.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="every entry, its size and last use")
    action.add_argument("--clear", action="store_true", help="delete every entry")
    c.set_defaults(func=cmd_cache)
    return p


def _stop_on(signum: int, frame) -> None:
    request_stop(signum)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or bad arguments (already reported in one line)
        return int(e.code or 0)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, _stop_on) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return args.func(args) or 0
    except InputError as e:
        print(f"forensics: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"forensics: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a read-only folder, a full disk, a file that vanished
        where = f"{e.filename}: " if e.filename else ""
        print(f"forensics: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"forensics: stopped ({name}); finished stages and runs are kept, rerun to resume",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        clear_stop()
        for s, handler in handlers.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
