"""The study's typed configuration tree: TOML → `StudyConfig` (every lens's settings dataclass inside).

Unknown keys and wrong types are one-line errors naming the file and key. `grid` names a preset of
the lens settings (`full`, or the demo's lighter `demo`); keys given under `[lenses.<lens>]`
override the preset's values. Paths resolve against the TOML's folder, `out` included (default
`runs/<name>` beside the TOML).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forensics.config import check_seeds, coerce, from_table
from forensics.errors import InputError
from forensics.lenses import REGISTRY, check_lenses
from forensics.models.checkpoint import check_dir
from forensics.models.executor import Executor
from forensics.models.runtime import Runtime
from forensics.outdir import safe_name
from forensics.study.grids import GRIDS, Grid, preset
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
    seeds: tuple[int, ...] | None = None  # RTT, layer RTT and probes; None: the grid's (full 3, demo 1)
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
        # the study-wide scorer and seeds (when given) go into every lens that shares them
        settings = self.settings.shared({"scorer": self.scorer, "seeds": self.seeds})
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "seeds", tuple(self.seeds or settings.of("relearn").seeds))

    def models(self) -> dict[str, Path]:
        """Every checkpoint, the original first and the control second."""
        out = {REFERENCE: self.original}
        if self.never_learned:
            out[CONTROL] = self.never_learned
        return {**out, **self.unlearned}

    def as_json(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    def lens_settings(self, name: str):
        """Lens `name`'s settings in this study (the grid's, with `[lenses.<name>]` over them)."""
        return self.settings.of(name)

    def jobs(self) -> Executor:
        """Where the study's independent jobs run."""
        return Executor(self.executor, self.ray_address, self.workers, self.ray_timeout)


RUNTIME = ("device", "dtype", "device_map", "max_memory")


@dataclass(frozen=True)
class TopTable:
    """The config's top level (its tables `[models]`, `[facts]`, `[lenses]`, `[verdict]` apart)."""

    name: str | None = None  # default: the file's stem
    out: str | None = None  # default: runs/<name> beside the file
    scorer: str = "choice"
    seed: int | None = None
    seeds: tuple[int, ...] | None = None
    grid: str = "full"
    cache_max_gb: float | None = None
    executor: str = "local"
    ray_address: str | None = None
    ray_timeout: float = 60.0
    workers: int = 1


@dataclass(frozen=True)
class ModelsTable:
    """`[models]` (its tables `unlearned` and `kinds`, of names, apart)."""

    original: str | None = None
    never_learned: str | None = None


@dataclass(frozen=True)
class FactsTable:
    """`[facts]` (its table `kinds` apart)."""

    path: str | None = None
    forget: tuple[str, ...] | None = None
    retain: tuple[str, ...] | None = None
    near_retain: tuple[str, ...] = ()
    control: tuple[str, ...] = ()
    drop_duplicates: bool = False
    partition: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class LensesTable:
    """`[lenses]` (each lens's own `[lenses.<name>]` apart)."""

    run: tuple[str, ...] = DEFAULT_LENSES


TABLES = ("models", "facts", "lenses", "verdict")
KIND_MODELS = ("never_learned", "unlearned")


@dataclass(frozen=True)
class KindStudy:
    """A study over kinds of knowledge: one study per kind (its forget splits, its control, its
    unlearned checkpoints) under OUT/<kind>/, then the kinds compared in OUT."""

    name: str
    out: Path
    studies: dict[str, StudyConfig]
    verdict: VerdictSettings = field(default_factory=VerdictSettings)


# lenses with settings: each reads its own [lenses.<name>] table
LENS_TABLES = tuple(name for name, lens in REGISTRY.items() if lens.settings is not None)


@dataclass(frozen=True)
class Reader:
    """Reads one config file's tables: every problem an InputError naming the file and key."""

    path: Path

    def raw(self) -> dict:
        try:
            return tomllib.loads(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"{self.path}: cannot read ({e.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{self.path}: malformed TOML ({e})") from None

    def table(self, parent: dict, key: str, where: str, known: tuple[str, ...] | None = None) -> dict:
        """`parent[key]` as a table ({} when absent), its keys among `known` when given."""
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise InputError(f"{self.path}: '{key}' in {where} must be a table")
        for k in value if known is not None else ():
            if k not in known:
                raise InputError(f"{self.path}: unknown key '{k}' in [{key}] (known: {', '.join(known)})")
        return value

    def typed(self, cls, table: dict, where: str, apart: tuple[str, ...] = ()):
        """Dataclass `cls` from `table`, its keys in `apart` read elsewhere."""
        return from_table(cls, {k: v for k, v in table.items() if k not in apart}, f"{self.path}{where}")

    def need(self, value, key: str, where: str):
        if value is None:
            raise InputError(f"{self.path}: missing '{key}' in {where}")
        return value

    def resolve(self, value, where: str) -> Path:
        return (self.path.parent / coerce(value, str, f"{self.path}: {where}")).resolve()


def load_config(path: Path) -> StudyConfig | KindStudy:
    """Parse and check a study TOML; every problem is an InputError naming the file and key."""
    read = Reader(Path(path))
    raw = read.raw()
    top = read.typed(TopTable, raw, "", apart=(*TABLES, *RUNTIME))
    if top.seed is not None and top.seeds is not None:
        raise InputError(f"{read.path}: give 'seed' or 'seeds', not both")
    if top.grid not in GRIDS:
        raise InputError(f"{read.path}: 'grid': unknown grid '{top.grid}' (choose from {', '.join(GRIDS)})")
    models_raw, facts_raw = read.table(raw, "models", "the config"), read.table(raw, "facts", "the config")
    lenses_raw = read.table(raw, "lenses", "the config", ("run", *LENS_TABLES))
    kinds = read.table(facts_raw, "kinds", "[facts]")
    if kinds and "forget" in facts_raw:
        raise InputError(
            f"{read.path}: [facts] gives 'forget' and 'kinds' (each kind's splits are its forget set)"
        )
    name = top.name or read.path.stem
    values = dict(
        verdict=from_table(VerdictSettings, raw.get("verdict", {}), f"{read.path}: [verdict]"),
        name=name,
        out=read.resolve(top.out, "'out'")
        if top.out
        else read.path.parent.resolve() / "runs" / safe_name(name),
        scorer=top.scorer,
        seeds=top.seeds if top.seed is None else (top.seed,),
        grid=top.grid,
        cache_max_gb=top.cache_max_gb,
        runtime=from_table(Runtime, {k: raw[k] for k in RUNTIME if k in raw}, f"{read.path}"),
        executor=top.executor,
        ray_address=top.ray_address,
        ray_timeout=top.ray_timeout,
        workers=top.workers,
        **_models(read, models_raw, bool(kinds)),
        **_facts(read, facts_raw, bool(kinds)),
        **_lenses(read, lenses_raw, top.grid),
    )
    if kinds:
        kind_models = read.table(models_raw, "kinds", "[models]", tuple(kinds))
        return _kind_study(read, values, kinds, kind_models)
    try:
        cfg = StudyConfig(**values)
    except InputError as e:
        raise InputError(f"{read.path}: {e}") from None
    _check_paths(read.path, cfg)
    return cfg


def _models(read: Reader, raw: dict, kinds: bool) -> dict:
    """StudyConfig's checkpoints from `[models]`."""
    table = read.typed(ModelsTable, raw, ": [models]", apart=("unlearned", "kinds"))
    if "kinds" in raw and not kinds:
        raise InputError(f"{read.path}: [models.kinds] needs [facts.kinds] (which splits are each kind's)")
    if "unlearned" not in raw and not kinds:
        raise InputError(f"{read.path}: missing 'unlearned' in [models]")
    unlearned = raw.get("unlearned", {})
    if not isinstance(unlearned, dict):
        raise InputError(f"{read.path}: [models.unlearned] must be a table of name = path")
    original = read.need(table.original, "original", "[models]")
    return {
        "original": read.resolve(original, "[models] 'original'"),
        "never_learned": (
            read.resolve(table.never_learned, "[models] 'never_learned'") if table.never_learned else None
        ),
        "unlearned": {str(k): read.resolve(v, f"[models.unlearned] '{k}'") for k, v in unlearned.items()},
    }


def _facts(read: Reader, raw: dict, kinds: bool) -> dict:
    """StudyConfig's facts and sets from `[facts]` (a kinds study's forget sets are its kinds')."""
    table = read.typed(FactsTable, raw, ": [facts]", apart=("kinds",))
    retain = table.retain if kinds and table.retain is None else read.need(table.retain, "retain", "[facts]")
    return {
        "facts": read.resolve(read.need(table.path, "path", "[facts]"), "[facts] 'path'")
        if table.path is not None or not kinds
        else None,
        "forget": () if kinds else read.need(table.forget, "forget", "[facts]"),
        "retain": retain or (),
        "near_retain": table.near_retain,
        "control": table.control,
        "drop_duplicates": table.drop_duplicates,
        "partition": table.partition,
        "facts_seed": table.seed,
    }


def _lenses(read: Reader, raw: dict, grid: str) -> dict:
    """The lenses to run and every lens's settings: its grid preset, its own table's keys over it
    (but for what it shares with the study, the scorer and the seeds)."""
    run = read.typed(LensesTable, raw, ": [lenses]", apart=LENS_TABLES).run
    presets = preset(grid)
    settings = {
        lens: from_table(
            REGISTRY[lens].settings,
            raw.get(lens, {}),
            f"{read.path}: [lenses.{lens}]",
            base=presets.of(lens),
            exclude=tuple(REGISTRY[lens].shares.values()),
        )
        for lens in LENS_TABLES
    }
    return {"lenses": run, "settings": Grid(settings)}


def _check_paths(path: Path, cfg: StudyConfig) -> None:
    for model, model_path in cfg.models().items():
        try:
            check_dir(model_path)
        except InputError as e:
            raise InputError(f"{path}: model '{model}': {e}") from None
    if not cfg.facts.exists():
        raise InputError(f"{path}: facts '{cfg.facts}' not found")


KIND_FACTS = ("path", "forget", "retain", "near_retain", "control")
# what a kinds study writes beside its kinds' folders (a kind's folder must not take one of these names)
RESERVED = frozenset({"results.json", "summary.md", "report", "stages", "cache", "relearn", "checkpoints"})


def _check_kinds_apart(path: Path, studies: dict[str, StudyConfig]) -> None:
    """The comparison treats the kinds as independent samples: refuse kinds that share a forget split
    of one facts file, or one never-learned control checkpoint."""
    owner: dict[tuple, str] = {}
    controls: dict[Path, str] = {}
    for kind, cfg in studies.items():
        for split in cfg.forget:
            other = owner.setdefault((cfg.facts, split), kind)
            if other != kind:
                raise InputError(
                    f"{path}: [facts.kinds]: split '{split}' of {cfg.facts.name} is forget in kinds "
                    f"'{other}' and '{kind}'; each kind needs facts of its own"
                )
        if cfg.never_learned is not None:
            other = controls.setdefault(cfg.never_learned.resolve(), kind)
            if other != kind:
                raise InputError(
                    f"{path}: [models.kinds]: kinds '{other}' and '{kind}' name one never-learned control "
                    f"({cfg.never_learned}); each kind's control is the model that never learned that "
                    "kind's forget facts"
                )


def _kind_study(read: Reader, values: dict, kinds: dict, kind_models: dict) -> KindStudy:
    """One study per kind of `[facts.kinds]` — `kind = [splits]` (its forget splits in `[facts]`'s
    file) or `[facts.kinds.<kind>]` with its own `forget` and optionally `path`, `retain`,
    `near_retain` (the paper's `years` beside `random-birthdays`) — with the never-learned control and
    unlearned checkpoints of `[models.kinds.<kind>]` (default: `[models]`'s — the same checkpoints
    unlearned on every kind at once, studied kind by kind)."""
    path, table, resolve = read.path, read.table, read.resolve

    def typed(value, hint, where: str):
        return coerce(value, hint, f"{path}: {where}")

    studies = {}
    for kind in kinds:
        if safe_name(kind).casefold() in RESERVED:
            raise InputError(
                f"{path}: [facts.kinds] '{kind}': the name of something a study writes in its folder "
                f"(reserved: {', '.join(sorted(RESERVED))}); name the kind otherwise"
            )
    for kind, spec in kinds.items():
        where = f"[facts.kinds] '{kind}'"
        if isinstance(spec, dict):
            spec = table(kinds, kind, "[facts.kinds]", KIND_FACTS)
            facts_of = {
                "forget": typed(spec.get("forget", ()), tuple[str, ...], f"{where} 'forget'"),
                **{
                    k: typed(spec[k], tuple[str, ...], f"{where} '{k}'")
                    for k in ("retain", "near_retain", "control")
                    if k in spec
                },
            }
            if "path" in spec:
                facts_of["facts"] = resolve(spec["path"], f"{where} 'path'")
        else:
            facts_of = {"forget": typed(spec, tuple[str, ...], where)}
        if facts_of.get("facts", values["facts"]) is None:
            raise InputError(f"{path}: missing 'path' in [facts] (or in [facts.kinds.{kind}])")
        if not facts_of.get("retain", values["retain"]):
            raise InputError(f"{path}: missing 'retain' in [facts] (or in [facts.kinds.{kind}])")
        own = table(kind_models, kind, "[models.kinds]", KIND_MODELS)
        unlearned = own.get("unlearned", None)
        if unlearned is not None and not isinstance(unlearned, dict):
            raise InputError(f"{path}: [models.kinds.{kind}.unlearned] must be a table of name = path")
        kind_values = {
            **values,
            **facts_of,
            "name": f"{values['name']} ({kind})",
            "out": values["out"] / safe_name(kind),
            "kinds": {kind: facts_of["forget"]},  # gives the forget facts their kind
        }
        if "never_learned" in own:
            kind_values["never_learned"] = resolve(
                own["never_learned"], f"[models.kinds.{kind}] 'never_learned'"
            )
        if unlearned is not None:
            kind_values["unlearned"] = {
                str(k): resolve(v, f"[models.kinds.{kind}.unlearned] '{k}'") for k, v in unlearned.items()
            }
        try:
            cfg = StudyConfig(**kind_values)
        except InputError as e:
            raise InputError(f"{path}: kind '{kind}': {e}") from None
        _check_paths(path, cfg)
        studies[kind] = cfg
    if len(studies) < 2:
        raise InputError(f"{path}: [facts.kinds] names {len(studies)} kind; a comparison needs two")
    _check_kinds_apart(path, studies)
    return KindStudy(values["name"], values["out"], studies, values["verdict"])
