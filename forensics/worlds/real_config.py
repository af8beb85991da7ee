"""The settings of a real-model world (docs/design.md §11), apart from the code that builds it
(`forensics.worlds.real`) and picks its facts (`forensics.worlds.real_facts`), which both read them."""

from __future__ import annotations

from dataclasses import dataclass

from forensics.config import check_float
from forensics.errors import InputError

# a pretrained ~100M model's unlearning (`forensics real`, and a cure's teacher on its world): each
# method's REAL point, batches of 8, at most 4 runs, 6 checks along each (UnlearnSettings' fields)
REAL_UNLEARN = {"start": "REAL", "batch_size": 8, "budget": 4, "checks": 6}


@dataclass(frozen=True)
class RealConfig:
    """What determines a real-model world: the model, the data and how many facts of each kind."""

    model: str | None = None  # a GGUF file or a checkpoint folder; None: the shipped SmolLM2
    data: str | None = None  # the paper's data folder (years/, random-birthdays/); None: ../shared
    # 2 splits of 68: T = 68 (about the 72 of the paper's 4:1 design at 4 × 24, so about its RTT steps)
    # and every forget fact scored as V once over 2 rotations (136 a side, not 48): docs/design.md §1
    forget_splits: int = 2
    per_split: int | None = 68  # forget (and control) facts per split, each kind; None: all the data has
    retain: int = 24  # known `years` facts kept (every kind's retain set)
    near: int = 12  # implanted birthdays that are not forgotten (the implanted kind's near-retain)
    scan: int = 64  # `years` facts scored per round of the known-fact rule (it scans every one)
    implant_lr: float = 1e-4
    implant_epochs: int = 10
    replay: bool = True  # replay the known `years` questions in the implant (keeps them known)
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        for name in ("forget_splits", "per_split", "retain", "near", "scan", "implant_epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"'{name}' must be at least 1 (got {getattr(self, name)})")
        if self.forget_splits < 2:
            raise InputError(f"'forget_splits' must be at least 2 (got {self.forget_splits}): RTT rotates")
        check_float(self.implant_lr, "'implant_lr'", positive=True)
