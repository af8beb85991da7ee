"""A study TOML → its typed configuration (forensics.study.config): the top level, `[models]`,
`[facts]` and `[lenses]` read as dataclasses by `from_table`; a kinds study's `[facts.kinds]` and
`[models.kinds]` beside them. Unknown keys and wrong types are one-line errors naming the file and
key; paths resolve against the TOML's folder, `out` included (default `runs/<name>` beside it)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from forensics.config import coerce, from_table
from forensics.errors import InputError
from forensics.lenses import REGISTRY
from forensics.models.checkpoint import check_dir
from forensics.models.hub import resolve_model
from forensics.models.runtime import Runtime
from forensics.outdir import safe_name
from forensics.study.config import DEFAULT_LENSES, KindStudy, StudyConfig
from forensics.study.grids import GRIDS, Grid, preset
from forensics.study.verdict import VerdictSettings

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


# lenses with settings: each reads its own [lenses.<name>] table
LENS_TABLES = tuple(name for name, lens in REGISTRY.items() if lens.settings is not None)


@dataclass(frozen=True)
class Reader:
    """Reads one config's tables — a TOML file's, or what `forensics.Study(...)` is given — every problem
    an InputError naming where (the file) and the key; paths resolve against `base`."""

    where: str  # what every error starts with: the file, or "Study(...)"
    base: Path  # the folder relative paths resolve against
    stem: str  # the study's name when it gives none
    path: Path | None = None  # the TOML file, when there is one

    @classmethod
    def of_file(cls, path: Path) -> Reader:
        path = Path(path)
        return cls(str(path), path.parent, path.stem, path)

    def raw(self) -> dict:
        try:
            return tomllib.loads(Path(self.path).read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"{self.where}: cannot read ({e.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{self.where}: malformed TOML ({e})") from None

    def table(self, parent: dict, key: str, where: str, known: tuple[str, ...] | None = None) -> dict:
        """`parent[key]` as a table ({} when absent), its keys among `known` when given."""
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise InputError(f"{self.where}: '{key}' in {where} must be a table")
        for k in value if known is not None else ():
            if k not in known:
                raise InputError(f"{self.where}: unknown key '{k}' in [{key}] (known: {', '.join(known)})")
        return value

    def typed(self, cls, table: dict, where: str, apart: tuple[str, ...] = ()):
        """Dataclass `cls` from `table`, its keys in `apart` read elsewhere."""
        return from_table(cls, table, f"{self.where}{where}", apart=apart)

    def need(self, value, key: str, where: str):
        if value is None:
            raise InputError(f"{self.where}: missing '{key}' in {where}")
        return value

    def resolve(self, value, where: str) -> Path:
        return (self.base / coerce(value, str, f"{self.where}: {where}")).resolve()

    def model(self, value, where: str) -> Path:
        """A checkpoint: a folder beside the file, or a Hugging Face hub id (forensics.models.hub)."""
        try:
            return resolve_model(coerce(value, str, f"{self.where}: {where}"), self.base)
        except InputError as e:
            raise InputError(f"{self.where}: {where}: {e}") from None


def load_config(path: Path) -> StudyConfig | KindStudy:
    """Parse and check a study TOML; every problem is an InputError naming the file and key."""
    read = Reader.of_file(path)
    return from_raw(read.raw(), read)


def from_raw(raw: dict, read: Reader) -> StudyConfig | KindStudy:
    """A study's config from its parsed tables (a TOML file's, or the same built in Python)."""
    top = read.typed(TopTable, raw, "", apart=(*TABLES, *RUNTIME))
    if top.seed is not None and top.seeds is not None:
        raise InputError(f"{read.where}: give 'seed' or 'seeds', not both")
    if top.grid not in GRIDS:
        raise InputError(f"{read.where}: 'grid': unknown grid '{top.grid}' (choose from {', '.join(GRIDS)})")
    models_raw, facts_raw = read.table(raw, "models", "the config"), read.table(raw, "facts", "the config")
    lenses_raw = read.table(raw, "lenses", "the config", ("run", *LENS_TABLES))
    kinds = read.table(facts_raw, "kinds", "[facts]")
    if kinds and "forget" in facts_raw:
        raise InputError(
            f"{read.where}: [facts] gives 'forget' and 'kinds' (each kind's splits are its forget set)"
        )
    name = read.stem if top.name is None else top.name
    values = dict(
        verdict=from_table(VerdictSettings, raw.get("verdict", {}), f"{read.where}: [verdict]"),
        name=name,
        out=read.base.resolve() / "runs" / safe_name(name)
        if top.out is None
        else read.resolve(top.out, "'out'"),
        scorer=top.scorer,
        seeds=top.seeds if top.seed is None else (top.seed,),
        grid=top.grid,
        cache_max_gb=top.cache_max_gb,
        runtime=from_table(Runtime, {k: raw[k] for k in RUNTIME if k in raw}, f"{read.where}"),
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
        raise InputError(f"{read.where}: {e}") from None
    _check_paths(read.where, cfg)
    return cfg


def _models(read: Reader, raw: dict, kinds: bool) -> dict:
    """StudyConfig's checkpoints from `[models]`."""
    table = read.typed(ModelsTable, raw, ": [models]", apart=("unlearned", "kinds"))
    if "kinds" in raw and not kinds:
        raise InputError(f"{read.where}: [models.kinds] needs [facts.kinds] (which splits are each kind's)")
    if "unlearned" not in raw and not kinds:
        raise InputError(f"{read.where}: missing 'unlearned' in [models]")
    unlearned = raw.get("unlearned", {})
    if not isinstance(unlearned, dict):
        raise InputError(f"{read.where}: [models.unlearned] must be a table of name = path")
    original = read.need(table.original, "original", "[models]")
    return {
        "original": read.model(original, "[models] 'original'"),
        "never_learned": (
            read.model(table.never_learned, "[models] 'never_learned'") if table.never_learned else None
        ),
        "unlearned": {str(k): read.model(v, f"[models.unlearned] '{k}'") for k, v in unlearned.items()},
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
            f"{read.where}: [lenses.{lens}]",
            base=presets.of(lens),
            exclude=tuple(REGISTRY[lens].shares.values()),
        )
        for lens in LENS_TABLES
    }
    return {"lenses": run, "settings": Grid(settings)}


def _check_paths(path: str, cfg: StudyConfig) -> None:
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


def _check_kinds_apart(path: str, studies: dict[str, StudyConfig]) -> None:
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


def _kind_facts(read: Reader, kinds: dict, kind: str) -> dict:
    """A kind's facts from `[facts.kinds]`: `kind = [splits]` or a `[facts.kinds.<kind>]` table."""
    where, spec = f"[facts.kinds] '{kind}'", kinds[kind]

    def typed(value, w: str):
        return coerce(value, tuple[str, ...], f"{read.where}: {w}")

    if not isinstance(spec, dict):
        return {"forget": typed(spec, where)}
    spec = read.table(kinds, kind, "[facts.kinds]", KIND_FACTS)
    out = {"forget": typed(spec.get("forget", ()), f"{where} 'forget'")}
    out |= {k: typed(spec[k], f"{where} '{k}'") for k in ("retain", "near_retain", "control") if k in spec}
    if "path" in spec:
        out["facts"] = read.resolve(spec["path"], f"{where} 'path'")
    return out


def _kind_models(read: Reader, kind_models: dict, kind: str) -> dict:
    """A kind's own never-learned control and unlearned checkpoints from `[models.kinds.<kind>]`."""
    own = read.table(kind_models, kind, "[models.kinds]", KIND_MODELS)
    out = {}
    if "never_learned" in own:
        out["never_learned"] = read.model(own["never_learned"], f"[models.kinds.{kind}] 'never_learned'")
    unlearned = own.get("unlearned")
    if unlearned is not None:
        if not isinstance(unlearned, dict):
            raise InputError(f"{read.where}: [models.kinds.{kind}.unlearned] must be a table of name = path")
        where = f"[models.kinds.{kind}.unlearned]"
        out["unlearned"] = {str(k): read.model(v, f"{where} '{k}'") for k, v in unlearned.items()}
    return out


def _kind_study(read: Reader, values: dict, kinds: dict, kind_models: dict) -> KindStudy:
    """One study per kind of `[facts.kinds]` — `kind = [splits]` (its forget splits in `[facts]`'s
    file) or `[facts.kinds.<kind>]` with its own `forget` and optionally `path`, `retain`,
    `near_retain` (the paper's `years` beside `random-birthdays`) — with the never-learned control and
    unlearned checkpoints of `[models.kinds.<kind>]` (default: `[models]`'s — the same checkpoints
    unlearned on every kind at once, studied kind by kind)."""
    path = read.where
    for kind in kinds:
        if safe_name(kind).casefold() in RESERVED:
            raise InputError(
                f"{path}: [facts.kinds] '{kind}': the name of something a study writes in its folder "
                f"(reserved: {', '.join(sorted(RESERVED))}); name the kind otherwise"
            )
    studies = {}
    for kind in kinds:
        facts_of = _kind_facts(read, kinds, kind)
        if facts_of.get("facts", values["facts"]) is None:
            raise InputError(f"{path}: missing 'path' in [facts] (or in [facts.kinds.{kind}])")
        if not facts_of.get("retain", values["retain"]):
            raise InputError(f"{path}: missing 'retain' in [facts] (or in [facts.kinds.{kind}])")
        kind_values = {
            **values,
            **facts_of,
            "name": f"{values['name']} ({kind})",
            "out": values["out"] / safe_name(kind),
            "kinds": {kind: facts_of["forget"]},  # gives the forget facts their kind
            **_kind_models(read, kind_models, kind),
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
