"""The grids: named presets of every lens's settings (`full`, the demo's lighter `demo`, `real` for a
pretrained ~100M model on 2 CPU cores, `paper` for a GPU). Each lens keeps its own presets
(`Lens.presets`); `[lenses.<lens>]` tables override them, and the settings a lens shares with the
study (`Lens.shares`: the scorer, the seeds) are the study's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from forensics.errors import InputError
from forensics.lenses import REGISTRY

GRIDS = ("full", "demo", "real", "paper")
RTT_LENSES = ("relearn", "relearn_lora")  # the attacks whose V rotation a study may set (layer RTT keeps one)


def _settings(grid: str) -> dict[str, Any]:
    return {name: lens.preset(grid) for name, lens in REGISTRY.items() if lens.settings is not None}


@dataclass(frozen=True)
class Grid:
    """The settings of every lens that has settings, by lens name."""

    lenses: Mapping[str, Any] = field(default_factory=lambda: _settings("full"))

    def of(self, name: str):
        """Lens `name`'s settings under this grid."""
        return self.lenses.get(name) or REGISTRY[name].preset("full")

    def rotated(self, rotations: int | None) -> Grid:
        """This grid with RTT (full and LoRA) over the first `rotations` forget splits (None: as it is)."""
        if rotations is None:
            return self
        return Grid({**self.lenses, **{n: replace(self.of(n), rotations=rotations) for n in RTT_LENSES}})

    def budgeted(self, minutes: float | None) -> Grid:
        """This grid with RTT's looks under a budget of `minutes` for the study (None: as it is)."""
        if minutes is None:
            return self
        return Grid({**self.lenses, "relearn": replace(self.of("relearn"), budget_minutes=minutes)})

    def shared(self, study: Mapping[str, Any]) -> Grid:
        """This grid with the study-wide values (`scorer`, `seeds`; None: not given) in every lens that
        shares them."""
        return Grid({name: REGISTRY[name].shared(s, study) for name, s in self.lenses.items()})


def preset(grid: str) -> Grid:
    """Grid `grid`: every lens's preset for it."""
    if grid not in GRIDS:
        raise InputError(f"'grid': unknown grid '{grid}' (choose from {', '.join(GRIDS)})")
    return Grid(_settings(grid))
