"""The toolkit from Python (a notebook): a study built from keyword arguments or a TOML file, run to a
`Results` whose verdicts and lenses are pandas DataFrames, and a report. The same config, checks and
one-line errors (`forensics.InputError`) as the command line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forensics.errors import InputError
from forensics.lenses import REGISTRY
from forensics.outcomes import Reading
from forensics.study.config import KindStudy, StudyConfig
from forensics.study.config_file import LENS_TABLES, Reader, from_raw, load_config
from reports.table import ROW_CELLS


def _plain(value):
    """A value as a TOML table would hold it: paths as strings, tuples as lists, tables as dicts."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class Study:
    """A study: `Study(original=…, unlearned={name: checkpoint}, facts=…, forget=[…], retain=[…],
    never_learned=…, lenses=[…], grid=…, **settings)` with the TOML's keys (`scorer`, `seeds`, `grid`,
    `device`, …; `verdict={…}`; a lens's table by its name, `relearn={"lrs": […]}`), or
    `Study.from_toml(path)`. Checkpoints are folders or hub ids; relative paths resolve against `base`
    (default: the working folder)."""

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
        lenses: Sequence[str] | None = None,
        name: str = "study",
        base: str | Path | None = None,
        **settings: Any,
    ):
        models = {"original": original, "unlearned": dict(unlearned)}
        if never_learned is not None:
            models["never_learned"] = never_learned
        given = {"forget": forget, "retain": retain, "near_retain": near_retain, "control": control}
        raw: dict = {
            "name": name,
            "models": models,
            "facts": {"path": facts, **{k: v for k, v in given.items() if v is not None and v != ()}},
        }
        tables = {k: settings.pop(k) for k in list(settings) if k in LENS_TABLES}
        if lenses is not None or tables:
            raw["lenses"] = {**({"run": lenses} if lenses is not None else {}), **tables}
        raw.update(settings)
        self.config = from_raw(_plain(raw), Reader("Study(...)", Path(base or Path.cwd()), name))

    @classmethod
    def from_toml(cls, path: str | Path) -> Study:
        """The study a TOML file describes (`forensics study PATH` runs the same)."""
        study = cls.__new__(cls)
        study.config = load_config(Path(path))
        return study

    def run(self, out: str | Path | None = None, progress: bool = True, force: bool = False) -> Results:
        """Every lens on every checkpoint (resuming what is done), then results.json, summary.md and the
        report under `out` (default: the config's); the results."""
        from forensics.study.kinds import run_kind_study
        from forensics.study.run import run_study

        cfg = self.config if out is None else _moved(self.config, Path(out))
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

    @property
    def verdicts(self):
        """One row per method: its verdict, the deciding lens with its difference and 95% interval,
        and the summary's figures (accuracy, RTT)."""
        import pandas as pd

        rows = []
        for method, r in self.raw.get("summary", {}).items():
            e = r.get("lenses", {}).get(r.get("deciding") or "", {})
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
        """Lens `name`'s readings per method: label, layer (None for an unlayered lens), method −
        control, its 95% and 90% intervals, the p-value of hiding, whether it was left out (blind or
        confounded)."""
        import pandas as pd

        if name not in REGISTRY:
            raise InputError(f"unknown lens '{name}' (choose from {', '.join(REGISTRY)})")
        lens, rows = REGISTRY[name], []
        for method, r in self.raw.get("summary", {}).items():
            mine = {str(k) for k in lens.outcomes(self.raw, method)} if lens.outcomes else set()
            left_out = {*r.get("blind", []), *r.get("confounded", [])}
            for shown, e in r.get("lenses", {}).items():
                if shown in mine:
                    reading = Reading.parse(shown)
                    rows.append(
                        {
                            "method": method,
                            "lens": name,
                            "label": reading.label,
                            "layer": reading.layer,
                            "difference": e["diff"],
                            "ci95_lo": e["ci95"][0],
                            "ci95_hi": e["ci95"][1],
                            "ci90_lo": e["ci90"][0],
                            "ci90_hi": e["ci90"][1],
                            "p_hidden": e["p_hidden"],
                            "method_value": e["method"],
                            "control_value": e["control"],
                            "left_out": shown in left_out,
                        }
                    )
        return pd.DataFrame(rows)

    def write(self, out: Path) -> None:
        """The report and summary.md under `out`, as `forensics study` writes them."""
        from reports.markdown import write_summary

        write_summary(self.raw, out / "summary.md", self.report(out / "report" / "index.html"))

    def report(self, path: str | Path) -> Path:
        """The HTML report at `path` (one self-contained file)."""
        from reports.html import write_report
        from reports.kinds import write_kinds_report

        write = write_kinds_report if "comparison" in self.raw else write_report
        return write(self.raw, Path(path))


def load_results(path: str | Path) -> Results:
    """A results.json written by a study (`forensics study`, `Study.run`)."""
    from forensics.models.checkpoint import read_json
    from reports.schema import check_results

    raw = read_json(Path(path))
    check_results(raw, str(path))
    return Results(raw, Path(path))


def diff(original: str | Path, unlearned: str | Path):
    """Where `unlearned` differs from `original` (folders or hub ids), streamed tensor by tensor: one
    row per block (None: outside the blocks) and kind of module, with ‖ΔW‖/‖W‖ and the rest of its
    statistics."""
    import pandas as pd

    from forensics.measure.weights import diff as stream_diff
    from forensics.models.hub import resolve_model

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
    epochs: Any  # pandas.DataFrame: epoch, acc_v, acc_t
    steps: int
    seconds: float


def rtt(model, tokenizer, sets, *, v: str, lr: float = 1e-3, epochs: int = 4, **settings) -> RTTRun:
    """RTT on a model in memory (an HF model or a TransformerBridge; a copy is trained, the model is
    left as it was): fine-tune on every forget split but `v` of `sets` (forensics.facts.core.Sets),
    scoring V and T after each epoch; `settings`: RelearnSettings' fields (batch_size, scorer, …)."""
    import pandas as pd

    from forensics.attacks.relearn import RelearnSettings, check, run_one
    from forensics.models.scoring import score

    config = RelearnSettings(lrs=(lr,), epochs=epochs, score_retain=False, **settings)
    if v not in check(sets, config):
        raise InputError(f"V split '{v}' is not a forget split (forget: {', '.join(sets.forget)})")
    before = score(model, tokenizer, list(sets.forget[v]), config.scorer).accuracy
    run = run_one(model, tokenizer, sets, v, lr, config, before, progress=False, seed=config.seeds[0])
    table = pd.DataFrame([{k: e.get(k) for k in ("epoch", "acc_v", "acc_t")} for e in run["epochs"]])
    return RTTRun(v, lr, before, table, run["steps"], run["seconds"])


@dataclass(frozen=True)
class ProbeRun:
    """Probes and the logit lens on a model in memory: one row per layer (a DataFrame) with the probe's
    accuracy on V and its 95% interval, the control task, selectivity, the ridge screen, the transfer
    of `reference`'s probes and the lens on forget and retain; `probes`, the fitted probes (pass them
    as another model's `reference` to read its residuals with them)."""

    layers: Any  # pandas.DataFrame
    probes: list


def probe(model, tokenizer, sets, *, scorer: str = "choice", reference: ProbeRun | None = None, **settings):
    """Linear probes and the logit lens layer by layer on a model in memory (an HF model, read through a
    TransformerBridge over a copy, or a TransformerBridge, read with its own tokenizer): trained on
    retain + near-retain + T, tested on V, over every rotation of `sets`' forget splits;
    `settings`: ProbeSettings' fields (Cs, folds, max_iter, tol, seed)."""
    import pandas as pd

    from forensics.measure.probing import ProbeSettings, probe_bridge
    from forensics.models.checkpoint import boot_bridge
    from forensics.models.scoring import SCORERS

    if scorer not in SCORERS:
        raise InputError(f"unknown scorer '{scorer}' (choose from {', '.join(SCORERS)})")
    if not hasattr(model, "original_model"):  # an HF model: a bridge over a copy, the model untouched
        model = boot_bridge(Path(model.config.name_or_path or "model"), model=model, tokenizer=tokenizer)
    given = reference.probes if reference else None
    run = probe_bridge(model, sets, scorer, settings=ProbeSettings(**settings), reference=given)
    names = ("probe", "control", "ridge", "transfer")
    rows = []
    for n, layer in enumerate(run["layers"]):
        row = {"layer": layer, **{k: run[k][n]["acc"] for k in names}}
        row |= {"probe_lo": run["probe"][n]["ci"][0], "probe_hi": run["probe"][n]["ci"][1]}
        row |= {"selectivity": run["selectivity"][n], "n": run["probe"][n]["n"]}
        row |= {f"lens_{part}": run["lens"][part][n]["acc"] for part in ("forget", "retain")}
        rows.append(row)
    return ProbeRun(pd.DataFrame(rows), run["probes"])
