"""The toolkit from Python (a notebook): a study built from keyword arguments or a TOML file, run to a
`Results` whose verdicts and lenses are pandas DataFrames, and a report. The same config, checks and
one-line errors (`forensics.InputError`) as the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forensics.config import coerce, from_table
from forensics.errors import InputError
from forensics.lenses import REGISTRY
from forensics.outcomes import Reading
from forensics.study.config import KindStudy, StudyConfig
from forensics.study.config_file import LENS_TABLES, Reader, from_raw, load_config
from reports.table import ROW_CELLS

# one row of `Results.lens`: the columns even a lens that read nothing has
LENS_COLUMNS = (
    "method",
    "lens",
    "label",
    "layer",
    "difference",
    "ci95_lo",
    "ci95_hi",
    "ci90_lo",
    "ci90_hi",
    "p_hidden",
    "method_value",
    "control_value",
    "left_out",
)


def _plain(value):
    """A value as a TOML table would hold it: paths as strings, tuples as lists, tables as dicts."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _arg(value, hint, where: str, name: str):
    """Argument `name` of `where` checked as the TOML key it stands for (a path read as its string):
    a wrong type is an InputError naming the argument, never a TypeError from deep inside."""
    return coerce(_plain(value), hint, f"{where}: '{name}'")


def _need(ok: bool, where: str, name: str, words: str, value) -> None:
    """Refuse argument `name` of `where` unless `ok`: it must be `words`."""
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise InputError(f"{where}: '{name}' must be {words} (got {type(value).__name__} {shown})")


class Study:
    """A study: `Study(original=…, unlearned={name: checkpoint}, facts=…, forget=[…], retain=[…],
    never_learned=…, lenses=[…], grid=…, **settings)` with the TOML's keys (`scorer`, `seeds`, `grid`,
    `device`, …; `verdict={…}`; a lens's table by its name, `relearn={"lrs": […]}`), or
    `Study.from_toml(path)`. `[facts]`'s `drop_duplicates`, `partition` and `seed` are the keywords
    `drop_duplicates`, `partition` and `facts_seed` (`seed` is the study's). Checkpoints are folders or
    hub ids; relative paths resolve against `base` (default: the working folder). A wrong argument is an
    InputError naming it."""

    def __init__(
        self,
        *,
        original: str | Path,
        unlearned: Mapping[str, str | Path],
        facts: str | Path,
        forget: Sequence[str] | None = None,
        retain: Sequence[str] | None = None,
        never_learned: str | Path | None = None,
        near_retain: Sequence[str] = (),
        control: Sequence[str] = (),
        drop_duplicates: bool = False,
        partition: int | None = None,
        facts_seed: int = 0,
        lenses: Sequence[str] | None = None,
        name: str = "study",
        base: str | Path | None = None,
        **settings: Any,
    ):
        where = "Study(...)"
        mapping = isinstance(unlearned, Mapping)  # a list or a string is no {name: checkpoint}
        _need(mapping, where, "unlearned", "a mapping of name → checkpoint", unlearned)
        models = {
            "original": _arg(original, str, where, "original"),
            "unlearned": _arg(unlearned, dict[str, str], where, "unlearned"),
        }
        if never_learned is not None:
            models["never_learned"] = _arg(never_learned, str, where, "never_learned")
        splits = {"forget": forget, "retain": retain, "near_retain": near_retain, "control": control}
        facts_table = {  # [facts], read by the same reader as a TOML's
            "path": _arg(facts, str, where, "facts"),
            **{k: _arg(v, tuple[str, ...], where, k) for k, v in splits.items() if v is not None},
            "drop_duplicates": _arg(drop_duplicates, bool, where, "drop_duplicates"),
            "partition": _arg(partition, int | None, where, "partition"),
            "seed": _arg(facts_seed, int, where, "facts_seed"),
        }
        raw: dict = {"name": _arg(name, str, where, "name"), "models": models, "facts": facts_table}
        tables = {k: settings.pop(k) for k in list(settings) if k in LENS_TABLES}
        if lenses is not None or tables:
            run = {} if lenses is None else {"run": _arg(lenses, tuple[str, ...], where, "lenses")}
            raw["lenses"] = {**run, **tables}
        raw.update(settings)
        folder = Path.cwd() if base is None else Path(_arg(base, str, where, "base"))
        self.config = from_raw(_plain(raw), Reader(where, folder, raw["name"]))

    @classmethod
    def from_toml(cls, path: str | Path) -> Study:
        """The study a TOML file describes (`forensics study PATH` runs the same)."""
        study = cls.__new__(cls)
        study.config = load_config(Path(_arg(path, str, "Study.from_toml(...)", "path")))
        return study

    def run(self, out: str | Path | None = None, progress: bool = True, force: bool = False) -> Results:
        """Every lens on every checkpoint (resuming what is done), then results.json, summary.md and the
        report under `out` (default: the config's); the results."""
        from forensics.study.kinds import run_kind_study
        from forensics.study.run import run_study

        where = "Study.run(...)"
        progress, force = _arg(progress, bool, where, "progress"), _arg(force, bool, where, "force")
        cfg = self.config if out is None else _moved(self.config, Path(_arg(out, str, where, "out")))
        if isinstance(cfg, KindStudy):
            raw, by_kind = run_kind_study(cfg, progress, force)
            for kind, kind_cfg in cfg.studies.items():  # each kind's own report and summary, as the CLI's
                Results(by_kind[kind]).write(Path(kind_cfg.out))
        else:
            raw = run_study(cfg, progress, force)
        results = Results(raw, Path(cfg.out) / "results.json")
        results.write(Path(cfg.out))
        return results


def _moved(cfg: StudyConfig | KindStudy, out: Path) -> StudyConfig | KindStudy:
    if isinstance(cfg, KindStudy):
        studies = {k: replace(c, out=out / c.out.name) for k, c in cfg.studies.items()}
        return replace(cfg, out=out, studies=studies)
    return replace(cfg, out=out)


@dataclass(frozen=True)
class Results:
    """A study's results: `verdicts` (one row per method) and `lens(name)` (one row per method ×
    reading × layer) as DataFrames, `report(path)`, and `raw`, the results.json dict."""

    raw: dict
    path: Path | None = None

    def __post_init__(self):
        """Refuse a `raw` that is no results.json's object, before any reading of it fails."""
        _need(isinstance(self.raw, dict), "Results(...)", "raw", "a results.json's object (a dict)", self.raw)

    @property
    def verdicts(self):
        """One row per method: its verdict, the deciding lens with its difference and 95% interval,
        and the summary's figures (accuracy, RTT)."""
        import pandas as pd

        rows = []
        for method, r in self.raw.get("summary", {}).items():
            e = (r.get("lenses") or {}).get(r.get("deciding") or "", {})  # null where the schema allows
            lo, hi = e.get("ci95", (None, None))
            figures = {key: r.get(key) for _, key in ROW_CELLS}  # the summary table's, from the lenses
            rows.append(
                {
                    "method": method,
                    "verdict": r["verdict"],
                    "deciding": r.get("deciding"),
                    "difference": e.get("diff"),
                    "ci95_lo": lo,
                    "ci95_hi": hi,
                    "against": r.get("against"),
                    **figures,
                    "evidence": r.get("evidence"),
                }
            )
        return pd.DataFrame(rows)

    def lens(self, name: str):
        """Lens `name`'s readings per method (`LENS_COLUMNS`): label, layer (None for an unlayered lens),
        method − control, its 95% and 90% intervals, the p-value of hiding, whether it was left out
        (blind or confounded). A lens that ran and read nothing gives no rows (but the columns); a name
        that is no lens, or a lens this study did not run, is an InputError listing those that ran."""
        import pandas as pd

        name = _arg(name, str, "Results.lens(...)", "name")
        where = self.path or "Results"
        ran = [n for n in REGISTRY if n in self.raw]  # each lens that ran has its section
        if name not in ran:
            why = f"lens '{name}' did not run in this study" if name in REGISTRY else f"no lens '{name}'"
            if "comparison" in self.raw:  # a kinds study's comparison: the lenses ran in each kind's study
                ran.append("none here, each kind's own results.json holds its lenses")
            raise InputError(f"{where}: {why} (lenses that ran: {', '.join(ran) or 'none'})")
        lens, rows = REGISTRY[name], []
        for method, r in self.raw.get("summary", {}).items():
            mine = {str(k) for k in _outcomes(lens, self.raw, method, where)}
            left_out = {*(r.get("blind") or []), *(r.get("confounded") or [])}  # null where the schema allows
            for shown, e in (r.get("lenses") or {}).items():
                if shown in mine:
                    reading = Reading.parse(shown)
                    ci95, ci90 = e["ci95"], e["ci90"]
                    values = (e["diff"], *ci95, *ci90, e["p_hidden"], e["method"], e["control"])
                    rows.append((method, name, reading.label, reading.layer, *values, shown in left_out))
        return pd.DataFrame(rows, columns=list(LENS_COLUMNS))

    def write(self, out: str | Path) -> None:
        """The report and summary.md under `out`, as `forensics study` writes them."""
        from reports.markdown import write_summary

        out = Path(_arg(out, str, "Results.write(...)", "out"))
        write_summary(self.raw, out / "summary.md", self.report(out / "report" / "index.html"))

    def report(self, path: str | Path) -> Path:
        """The HTML report at `path` (one self-contained file)."""
        from reports.html import write_report
        from reports.kinds import write_kinds_report

        write = write_kinds_report if "comparison" in self.raw else write_report
        return write(self.raw, Path(_arg(path, str, "Results.report(...)", "path")))


def _outcomes(lens, raw: dict, method: str, where) -> set:
    """The readings `lens` gives `method` in `raw`: a section whose layout its lens cannot read (a
    results.json edited by hand) is an InputError naming the file and the lens, not a KeyError."""
    try:
        return set(lens.outcomes(raw, method)) if lens.outcomes else set()
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        problem = f"{type(e).__name__}: {e}"
        raise InputError(f"{where}: the '{lens.name}' section cannot be read ({problem})") from None


def load_results(path: str | Path) -> Results:
    """A results.json written by a study (`forensics study`, `Study.run`), read and checked as
    `forensics report` reads it (reports.schema.read_results)."""
    from reports.schema import read_results

    path = Path(_arg(path, str, "load_results(...)", "path"))
    return Results(read_results(path), path)


def cure(world: str | Path, out: str | Path, *, grid: str = "demo", kind: str | None = None, **settings: Any):
    """`forensics cure` from Python: the world's model unlearned by `method`, its information map, UNDO's
    cure on the blocks the map ranks highest and on blocks that ignore it (lowest, random, every one),
    and a study of every cure; its `Results` (the cures under `raw["cure"]`). `settings`: CureSettings'
    fields (method, k, alpha, draws, steps, global_factor, seed, controls); `lenses`, `progress` as for
    a study."""
    from forensics.config import from_table
    from forensics.study.cure import CureSettings, cure_world

    where = "cure(...)"
    world, out = Path(_arg(world, str, where, "world")), Path(_arg(out, str, where, "out"))
    lenses, progress = (
        settings.pop("lenses", None),
        _arg(settings.pop("progress", False), bool, where, "progress"),
    )
    lenses = None if lenses is None else _arg(lenses, tuple[str, ...], where, "lenses")
    grid, kind = _arg(grid, str, where, "grid"), _arg(kind, str | None, where, "kind")
    chosen = from_table(CureSettings, _plain(settings), where)
    return Results(
        cure_world(world, out, chosen, grid, lenses, kind=kind, progress=progress), out / "study/results.json"
    )


def diff(original: str | Path, unlearned: str | Path):
    """Where `unlearned` differs from `original` (folders or hub ids), streamed tensor by tensor: one
    row per block (None: outside the blocks) and kind of module, with ‖ΔW‖/‖W‖ and the rest of its
    statistics."""
    import pandas as pd

    from forensics.measure.weights import diff as stream_diff
    from forensics.models.hub import resolve_model

    where = "diff(...)"
    original, unlearned = _arg(original, str, where, "original"), _arg(unlearned, str, where, "unlearned")
    result = stream_diff(resolve_model(original), resolve_model(unlearned))
    rows = [
        {"layer": None if layer == "none" else int(layer), "module": kind, **stats}
        for layer, kinds in result["layers"].items()
        for kind, stats in kinds.items()
    ]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RTTRun:
    """One RTT run on a model in memory: V's split, the learning rate, per epoch the accuracy on V and
    T (a DataFrame), the optimizer steps and seconds."""

    v: str
    lr: float
    before: float  # V's accuracy before the attack
    epochs: Any  # pandas.DataFrame: epoch, acc_v, acc_t (NaN once T is fitted: no longer scored)
    steps: int
    seconds: float


def _in_memory(where: str, model, tokenizer, sets, bridge_tokenizer: bool = False) -> None:
    """Refuse what `rtt` and `probe` cannot run on: a model that is no torch module, a tokenizer that is
    not one (None only where a TransformerBridge reads with its own: `bridge_tokenizer`), other sets."""
    import torch

    from forensics.facts.core import Sets

    _need(isinstance(model, torch.nn.Module), where, "model", "an HF model or a TransformerBridge", model)
    own = bridge_tokenizer and tokenizer is None and hasattr(model, "original_model")
    _need(callable(tokenizer) or own, where, "tokenizer", "the model's tokenizer", tokenizer)
    _need(isinstance(sets, Sets), where, "sets", "forensics.facts.core.Sets (load_world(dir)[1])", sets)


def rtt(model, tokenizer, sets, *, v: str, lr: float = 1e-3, epochs: int = 4, **settings: Any) -> RTTRun:
    """RTT on a model in memory (an HF model or a TransformerBridge; a copy is trained, the model is
    left as it was): fine-tune on every forget split but `v` of `sets` (forensics.facts.core.Sets),
    scoring V after each epoch and T until it is fitted; `settings`: RelearnSettings' fields
    (batch_size, scorer, …).
    A wrong argument (an unknown keyword, `lr` not a positive finite number, `epochs` not a positive
    integer, …) is an InputError naming it."""
    import pandas as pd

    from forensics.attacks.relearn import RelearnSettings, check, run_one
    from forensics.models.scoring import score

    where = "rtt(...)"
    _in_memory(where, model, tokenizer, sets)
    v, lr = _arg(v, str, where, "v"), _arg(lr, float, where, "lr")
    if not lr > 0:
        raise InputError(f"{where}: 'lr' must be positive (got {lr:g})")
    base = RelearnSettings(lrs=(lr,), score_retain=False)
    table = {**settings, "epochs": epochs}
    config = from_table(RelearnSettings, table, where, base=base, exclude=("lrs", "score_retain"))
    if v not in check(sets, config):
        raise InputError(f"{where}: V split '{v}' is not a forget split (forget: {', '.join(sets.forget)})")
    before = score(model, tokenizer, list(sets.forget[v]), config.scorer).accuracy
    run = run_one(model, tokenizer, sets, v, lr, config, before, progress=False, seed=config.seeds[0])
    table = pd.DataFrame([{k: e.get(k) for k in ("epoch", "acc_v", "acc_t")} for e in run["epochs"]])
    return RTTRun(v, lr, before, table, run["steps"], run["seconds"])


@dataclass(frozen=True)
class ProbeRun:
    """Probes and the logit lens on a model in memory: one row per layer (a DataFrame) with the probe's
    accuracy on V and its 95% interval, the control task, selectivity, the ridge screen, the transfer
    of `reference`'s probes and the lens on forget and retain; `probes`, the fitted probes and the
    readout they read through (pass the run as another model's `reference` to read its residuals with
    them)."""

    layers: Any  # pandas.DataFrame
    probes: dict


def probe(
    model, tokenizer, sets, *, scorer: str = "choice", reference: ProbeRun | None = None, **settings: Any
) -> ProbeRun:
    """Linear probes and the logit lens layer by layer on a model in memory (an HF model, read through a
    TransformerBridge over a copy, or a TransformerBridge, read with its own tokenizer): trained on
    retain + near-retain + T, tested on V, over every rotation of `sets`' forget splits;
    `settings`: ProbeSettings' fields (Cs, folds, max_iter, tol, seed). A wrong argument is an
    InputError naming it."""
    import pandas as pd

    from forensics.measure.probing import ProbeSettings, probe_bridge
    from forensics.models.checkpoint import boot_bridge
    from forensics.models.scoring import SCORERS

    where = "probe(...)"
    _in_memory(where, model, tokenizer, sets, bridge_tokenizer=True)
    scorer = _arg(scorer, str, where, "scorer")
    if scorer not in SCORERS:
        raise InputError(f"{where}: 'scorer': unknown scorer '{scorer}' (choose from {', '.join(SCORERS)})")
    ok = reference is None or isinstance(reference, ProbeRun)
    _need(ok, where, "reference", "a ProbeRun (what forensics.probe returned) or None", reference)
    config = from_table(ProbeSettings, settings, where)
    if not hasattr(model, "original_model"):  # an HF model: a bridge over a copy, the model untouched
        model = boot_bridge(Path(model.config.name_or_path or "model"), model=model, tokenizer=tokenizer)
    given = reference.probes if reference else None
    run = probe_bridge(model, sets, scorer, settings=config, reference=given)
    names = ("probe", "control", "ridge", "transfer")
    rows = []
    for n, layer in enumerate(run["layers"]):
        row = {"layer": layer, **{k: run[k][n]["acc"] for k in names}}
        row |= {"probe_lo": run["probe"][n]["ci"][0], "probe_hi": run["probe"][n]["ci"][1]}
        row |= {"selectivity": run["selectivity"][n], "n": run["probe"][n]["n"]}
        row |= {f"lens_{part}": run["lens"][part][n]["acc"] for part in ("forget", "retain")}
        rows.append(row)
    return ProbeRun(pd.DataFrame(rows), run["reference"])
