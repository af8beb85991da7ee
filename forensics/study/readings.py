"""What a study's lenses read per fact, per model (docs/design.md §9): each information lens's outcomes
and a model's outcomes on a subset of its facts; loads no model."""

from __future__ import annotations

import numpy as np

from forensics.lenses import REGISTRY
from forensics.outcomes import Reading


def outcomes(results: dict, name: str) -> dict[Reading, tuple[np.ndarray, list[int]]]:
    """Per information lens (and layer): (outcomes [seeds, facts], indices of those facts among the
    forget facts) for model `name`; lenses the study did not run, or ran without `name`, are absent."""
    out: dict[Reading, tuple[np.ndarray, list[int]]] = {}
    for lens in REGISTRY.values():
        if lens.outcomes is not None:
            out.update(lens.outcomes(results, name))
    return out


def on(pair: tuple[np.ndarray, list[int]], facts: list[int]) -> np.ndarray | None:
    """A model's outcomes (`pair`: [seeds, its facts] and their indices) on `facts`, a subset of its own
    (a model a look gave more V splits, read beside one it did not); None when they are not a subset."""
    rows, own = pair
    at = {f: i for i, f in enumerate(own)}
    return rows[:, [at[f] for f in facts]] if all(f in at for f in facts) else None
