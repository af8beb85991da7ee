"""Per-fact outcomes: 0/1 per forget fact, written compactly in results.json, and the stratified
bootstrap of their means that every interval in the toolkit is drawn from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Reading(NamedTuple):
    """What one outcome array reads: a lens's label and, for a lens read layer by layer, the layer
    ("embed", "0", …). Written "label @layer" only where it is shown (results.json, the report)."""

    label: str
    layer: str | None = None

    def __str__(self) -> str:
        return self.label if self.layer is None else f"{self.label} @{self.layer}"

    @classmethod
    def parse(cls, text: str) -> Reading:
        """The reading a shown label names (the inverse of `str`)."""
        label, sep, layer = text.partition(" @")
        return cls(label, layer if sep else None)


def bits(correct) -> str:
    """Per-fact 0/1 outcomes as a compact string (results.json keeps every one)."""
    return "".join("1" if c else "0" for c in correct)


def unbits(text: str) -> np.ndarray:
    """The outcomes `bits` wrote, as a 0/1 array."""
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")


def bootstrap_means(arrays: Sequence[np.ndarray], strata: Sequence, n_boot: int = 2000, seed: int = 0):
    """[len(arrays), n_boot] bootstrap draws of each array's mean, every array with the same draws
    (so they stay paired). Each is [seeds, facts] (a 1-d array is one seed); seeds are resampled with
    replacement and facts within their stratum."""
    arrays = np.stack([np.atleast_2d(a).astype(float) for a in arrays])  # [arrays, seeds, facts]
    rng = np.random.default_rng(seed)
    _, n_seeds, n = arrays.shape
    per_fact = arrays[:, rng.integers(0, n_seeds, size=(n_boot, n_seeds))].mean(2)  # [arrays, n_boot, facts]
    strata = np.asarray(strata)
    picks = np.empty((n_boot, n), dtype=int)
    start = 0
    for value in dict.fromkeys(strata.tolist()):
        members = np.flatnonzero(strata == value)
        picks[:, start : start + len(members)] = members[
            rng.integers(0, len(members), (n_boot, len(members)))
        ]
        start += len(members)
    return np.take_along_axis(per_fact, np.broadcast_to(picks, per_fact.shape), axis=2).mean(2)


def ci(lo: float, hi: float, *, signed: bool = True, label: str = "") -> str:
    """An interval as every table and sentence writes it: "[+0.10, +0.30]" (`signed`: with its signs;
    `label`, e.g. "95% CI ", inside the brackets)."""
    f = "+.2f" if signed else ".2f"
    return f"[{label}{lo:{f}}, {hi:{f}}]"


def with_ci(value: float, lo: float, hi: float, *, signed: bool = True, label: str = "") -> str:
    """A value and its interval: "+0.20 [+0.10, +0.30]"."""
    return f"{value:{'+.2f' if signed else '.2f'}} {ci(lo, hi, signed=signed, label=label)}"
