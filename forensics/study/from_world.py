"""A study over a world's checkpoints: the demo's, the real model's and the validation studies."""

from __future__ import annotations

from pathlib import Path

from forensics.models.executor import Executor
from forensics.models.runtime import Runtime
from forensics.study.config import DEFAULT_LENSES, StudyConfig
from forensics.study.grids import preset


def world_study(
    name: str,
    world_dir: Path,
    world: dict,
    unlearned: dict[str, Path],
    out: Path,
    lenses=DEFAULT_LENSES,
    runtime: Runtime = Runtime(),
    executor: Executor = Executor(),
    kind: str | None = None,
    grid: str = "demo",
    rotations: int | None = None,
) -> StudyConfig:
    """A study over a world's original and never-learned checkpoints and `unlearned` ones, with the
    world's facts and sets and `grid` (the demo's for its study and the validation studies); in a
    two-kind world, `kind`'s sets and control; RTT takes the first `rotations` forget splits as V
    (None: as many as the grid's)."""
    root = Path(world_dir).resolve()
    s = world["kinds"][kind]["sets"] if kind else world["sets"]
    # a kind of pretrained knowledge has no never-learned model: its control is facts (`control` sets)
    control = world["kinds"][kind]["control"] if kind else "never_learned"
    return StudyConfig(
        name=name,
        out=Path(out).resolve(),
        original=root / world["models"]["original"]["path"],
        never_learned=root / world["models"][control]["path"] if control else None,
        control=tuple(s.get("control", ())),
        unlearned={m: Path(p).resolve() for m, p in unlearned.items()},
        facts=root / world["facts"],
        forget=tuple(s["forget"]),
        retain=tuple(s["retain"]),
        near_retain=tuple(s["near_retain"]),
        scorer=world["scorer"],
        lenses=tuple(lenses),
        grid=grid,
        settings=preset(grid).rotated(rotations),
        runtime=runtime,
        executor=executor.kind,
        ray_address=executor.address,
        ray_timeout=executor.timeout,
        workers=executor.workers,
    )
