"""The study's typed configuration: `StudyConfig` (every lens's settings inside, under `grid`'s
presets) and `KindStudy` (one study per kind of knowledge). A TOML file is read into them by
forensics.study.config_file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forensics.config import check_seeds
from forensics.errors import InputError
from forensics.lenses import REGISTRY, check_lenses
from forensics.models.executor import Executor
from forensics.models.runtime import Runtime
from forensics.study.grids import GRIDS, Grid
from forensics.study.verdict import VerdictSettings

LENSES = tuple(REGISTRY)
# what a study runs unless [lenses] run says otherwise: opt-in lenses (LoRA RTT, a second attack
# beside full RTT for models too big to copy; the heavy ones) are asked for by name
DEFAULT_LENSES = tuple(name for name, lens in REGISTRY.items() if lens.default)
REFERENCE, CONTROL = "original", "never_learned"


@dataclass(frozen=True)
class StudyConfig:
    """What a study runs on and how."""

    name: str
    out: Path
    original: Path
    unlearned: dict[str, Path]
    facts: Path
    forget: tuple[str, ...]
    retain: tuple[str, ...]
    never_learned: Path | None = None
    near_retain: tuple[str, ...] = ()
    control: tuple[str, ...] = ()  # facts the original does not know, a split beside each forget split
    drop_duplicates: bool = False
    partition: int | None = None  # deal every split into this many parts (one benchmark file → RTT splits)
    facts_seed: int = 0  # the partition's and TOFU's choice order
    scorer: str = "choice"
    seeds: tuple[int, ...] | None = None  # every lens that takes seeds (RTT, layer RTT, probes, in-context
    # relearning); None: each keeps its grid's (`study_seeds` is what RTT runs with)
    lenses: tuple[str, ...] = DEFAULT_LENSES
    grid: str = "full"
    settings: Grid = field(default_factory=Grid)
    cache_max_gb: float | None = None  # cap on OUT/cache; least recently used entries go first
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
    runtime: Runtime = field(default_factory=Runtime)  # device, dtype, device_map, max_memory
    executor: str = "local"  # or "ray": the independent jobs as Ray tasks
    ray_address: str | None = None  # an existing cluster (default: a local one)
    ray_timeout: float = 60.0  # seconds for the cluster to answer before the study stops
    workers: int = 1  # local executor: worker processes running jobs side by side
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> its splits (facts' `kind`)

    def __post_init__(self):
        if self.grid not in GRIDS:
            raise InputError(f"'grid': unknown grid '{self.grid}' (choose from {', '.join(GRIDS)})")
        check_lenses(self.lenses)
        if self.never_learned is not None and self.control:
            raise InputError(
                "[models] 'never_learned' and [facts] 'control' both given: choose one control (the "
                "model that never learned the forget facts, or control facts the original does not know)"
            )
        if not self.unlearned:
            raise InputError("[models.unlearned] names no checkpoint")
        for name in self.unlearned:
            if name in (REFERENCE, CONTROL):
                raise InputError(f"'{name}' is reserved; name the unlearned checkpoint otherwise")
        if self.cache_max_gb is not None and not self.cache_max_gb > 0:
            raise InputError(f"'cache_max_gb' must be positive (got {self.cache_max_gb})")
        self.jobs()  # checks the executor's settings
        if self.seeds is not None:
            check_seeds(self.seeds)
            object.__setattr__(self, "seeds", tuple(self.seeds))
        # the study-wide scorer and seeds (when given) go into every lens that shares them
        object.__setattr__(
            self, "settings", self.settings.shared({"scorer": self.scorer, "seeds": self.seeds})
        )

    @property
    def study_seeds(self) -> tuple[int, ...]:
        """The seeds RTT runs with: the study's, or its grid's."""
        return self.seeds or tuple(self.settings.of("relearn").seeds)

    def models(self) -> dict[str, Path]:
        """Every checkpoint, the original first and the control second."""
        out = {REFERENCE: self.original}
        if self.never_learned:
            out[CONTROL] = self.never_learned
        return {**out, **self.unlearned}

    def as_json(self) -> dict:
        return json.loads(json.dumps({**asdict(self), "seeds": self.study_seeds}, default=str))

    def lens_settings(self, name: str):
        """Lens `name`'s settings in this study (the grid's, with `[lenses.<name>]` over them)."""
        return self.settings.of(name)

    def jobs(self) -> Executor:
        """Where the study's independent jobs run."""
        return Executor(self.executor, self.ray_address, self.workers, self.ray_timeout)


@dataclass(frozen=True)
class KindStudy:
    """A study over kinds of knowledge: one study per kind (its forget splits, its control, its
    unlearned checkpoints) under OUT/<kind>/, then the kinds compared in OUT."""

    name: str
    out: Path
    studies: dict[str, StudyConfig]
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
