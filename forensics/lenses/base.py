"""What a lens is (docs/design.md §12): its name, its kind, what it runs, and how its section reads as
per-fact outcomes (information lenses, for the verdict) or per-block rows (action lenses, for the map).

Nothing outside a lens's own module knows its section's layout: the study runs `run`, the summary
asks `outcomes` / `control_outcomes` / `action`, the report draws what they and `draw` return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from forensics.outcomes import Reading

INFORMATION, ACTION, MEASURE = "information", "action", "measure"
Outcomes = dict[Reading, tuple[np.ndarray, list[int]]]  # → ([seeds, facts] 0/1, forget-fact indices)


@dataclass
class Context:
    """What a lens runs on: the study's config, facts and checkpoints (original first, then the
    control, then the methods), their digests, OUT, and the sections of the lenses run before it."""

    cfg: Any  # forensics.study.config.StudyConfig (not imported: lenses sit below the study)
    sets: Any  # forensics.facts.core.Sets
    models: dict[str, Path]
    digests: dict[str, str]
    out: Path
    progress: bool = True
    results: dict = field(default_factory=dict)

    @property
    def others(self) -> dict[str, Path]:
        """Every checkpoint but the original (the control goes through every lens, docs/design.md §9)."""
        return {n: p for n, p in self.models.items() if n != "original"}

    @property
    def runtime(self):
        return self.cfg.runtime

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def scorer(self) -> str:
        return self.cfg.scorer

    @property
    def failed(self) -> list[str]:
        """The unlearned checkpoints whose `forensics unlearn` sweep met no run of its rule: their verdict
        is "unlearning did not succeed" whatever an attack finds (read from each one's metadata)."""
        from forensics.models.checkpoint import read_metadata

        return [n for n, p in self.others.items() if read_metadata(p).get("unlearning_failed") is True]

    def settings(self, name: str):
        """Lens `name`'s settings: the grid's where the grid has them, else `[lenses.<name>]`."""
        return self.cfg.lens_settings(name)


@dataclass(frozen=True, kw_only=True)
class Series:
    """One line (or set of bars) of a report panel, as plain data the report draws."""

    name: str
    x: list
    y: list
    color: str | None = None  # a colour, or a model's role the report colours (original, never_learned, …)
    dash: str | None = None
    bars: bool = False
    legend: bool = True  # listed in the figure's legend


@dataclass(frozen=True, kw_only=True)
class Panel:
    """One panel of a method's layer-by-layer figure: shown (saying "not run") even where the lens
    did not run; `unit`: an accuracy's [0, 1] axis."""

    title: str
    unit: bool = False


@dataclass(frozen=True, kw_only=True)
class Lens:
    """One lens. `run(ctx)` returns its results section; `outcomes(results, model)` its per-fact
    outcomes on the forget facts (information lenses); `control_outcomes(results, model)` the same
    runs' outcomes [seeds, control facts] on the control splits; `action(results, model)` its rows of
    the action map ({row: [value per block]}, with "layers" when it knows them); `adequacy(results,
    model)` an attack's strength on that model ({label: fitted, saturated, compute}, docs/design.md §13)."""

    name: str
    kind: str  # INFORMATION, ACTION or MEASURE (accuracy: what every other lens is read beside)
    run: Callable[[Context], dict]
    settings: type | None = None  # its settings dataclass, read from [lenses.<name>]
    default: bool = True  # run unless [lenses] run names the lenses
    outcomes: Callable[[dict, str], Outcomes] | None = None
    control_outcomes: Callable[[dict, str], dict[Reading, np.ndarray]] | None = None
    action: Callable[[dict, str], dict | None] | None = None
    rows: Mapping[str, str] = field(default_factory=dict)  # its action-map rows and their titles
    adequacy: Callable[[dict, str], dict[str, dict]] | None = None  # an attack's strength, per label
    needs: tuple[str, ...] = ()  # lenses whose sections it reads: they run first when the study runs them
    panels: tuple[Panel, ...] = ()  # its panels in a method's layer-by-layer figure
    draw: Callable[[dict, str], Mapping[str, list[Series]]] | None = None  # panel title → its series
    cells: Callable[[dict, str], dict] | None = None  # its entries in a method's summary row
    columns: Mapping[str, str] = field(default_factory=dict)  # summary-table column → its row entry
    schema: tuple[str, ...] = ()  # the keys of its section the report reads (reports/schema.py), under it
    presets: Mapping[str, Any] = field(default_factory=dict)  # grid name → its settings there (else defaults)
    shares: Mapping[str, str] = field(default_factory=dict)  # study-wide setting → its settings' field
    skips_failed: bool = False  # leaves out the checkpoints whose unlearning failed (`Context.failed`)
    version: int = 0  # raised when what it computes changes: a stage kept from before is redone

    def preset(self, grid: str):
        """Its settings under grid `grid` (its own preset there, else its settings' defaults)."""
        return self.presets.get(grid) or self.settings()

    def shared(self, settings, study: Mapping[str, Any]):
        """`settings` with the study-wide values it shares (`shares`) that the study gives (not None):
        a field that holds one value takes the first of a list (a probe's seed from the seeds)."""
        values = {}
        for key, name in self.shares.items():
            value = study.get(key)
            if value is not None:
                one = isinstance(value, tuple | list) and not isinstance(getattr(settings, name), tuple)
                values[name] = value[0] if one else value
        return replace(settings, **values) if values else settings

    def inputs(self, ctx: Context) -> dict:
        """What determines its section beyond the facts, scorer and runtime: the checkpoints'
        digests and its settings."""
        out: dict = {"models": ctx.digests}
        if self.version:
            out["version"] = self.version
        if self.skips_failed:
            out["skipped"] = ctx.failed
        if self.settings is not None:
            s = ctx.settings(self.name)
            # settings that act after its section (RTT's looks) do not make it another
            after = getattr(s, "AFTER_SECTION", ())
            out["settings"] = {k: v for k, v in asdict(s).items() if k not in after} if is_dataclass(s) else s
        return out


def everything(results: dict) -> list[int]:
    """The indices of every forget fact (a lens that read them all)."""
    return list(range(len(results["facts"]["splits"])))
