"""RTT's settings (docs/design.md §1, §9): the grid, what adequacy asks of it, and the looks a budget buys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from forensics.attacks.selection import SELECT
from forensics.config import check_float, check_seeds
from forensics.errors import InputError
from forensics.facts.formats import LOSS_FORMATS, default_format
from forensics.models.scoring import SCORERS

RTT_METHODS = ("full", "lora")


@dataclass(frozen=True)
class RelearnSettings:
    """The attack's grid: log-spaced learning rates × epochs × seeds, loss format, batch size."""

    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    epochs: int = 6
    batch_size: int = 16
    scorer: str = "choice"
    loss_format: str | None = None  # default: the one that matches the scorer
    seeds: tuple[int, ...] = (0, 1, 2)  # each run's own seed is derived from (seed, model, V, lr)
    patience: int | None = None  # stop a run once V accuracy has not improved for this many epochs
    score_retain: bool = True  # also score retain after each epoch (T always is: the attack's adequacy)
    rotations: int | None = None  # only the first this many forget splits take their turn as V
    fit_t: float = 0.9  # T fitted: its best accuracy over the grid at least this (or near the original's)
    fit_margin: float = 0.05  # ... or within this of the original's
    noise_facts: int = 1  # a gain of at most this many V facts at the grid's edge is chance, not a trend
    edge_alpha: float | None = 0.05  # ... nor one a sign test on the V facts it changed finds at this level
    extend_rounds: int = 2  # rounds the grid may grow by while some model's attack is not adequate
    max_lr: float = 1e-1  # the extension's cap on the learning rate (too large destroys what is known)
    method: str = "full"  # or "lora": low-rank adapters (peft) on a frozen model, for models too big to copy
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] | None = None  # module names; None: every linear layer but the output
    layers: tuple[int, ...] | None = None  # localization only: the blocks it reverts, patches, trains
    select: str = "cross"  # what the verdict reads: cross-fitted ("cross") or the best cell on V ("max")
    # looks (docs/design.md §9): with a budget, rows still inconclusive after the first pass get the next
    # V split or one more RTT seed per look (the runs done reused) while the next look fits the study's
    # minutes; every look, the first included, is decided at alpha / looks: no more false alarms
    budget_minutes: float | None = None  # the study's minutes in all (None: one look, at the full alpha)
    looks: int = 3  # the most looks a budget may buy, the first pass included

    AFTER_SECTION: ClassVar[tuple[str, ...]] = ("budget_minutes", "looks")  # not in its stage's key

    def __post_init__(self):
        if self.method not in RTT_METHODS:
            raise InputError(
                f"'method': unknown RTT method '{self.method}' (choose {' or '.join(RTT_METHODS)})"
            )
        if self.lora_rank < 1:
            raise InputError(f"'lora_rank' must be at least 1 (got {self.lora_rank})")
        if not self.lora_alpha > 0:
            raise InputError(f"'lora_alpha' must be positive (got {self.lora_alpha})")
        check_seeds(self.seeds)
        if self.select not in SELECT:
            raise InputError(f"'select' must be {' or '.join(SELECT)} (got {self.select!r})")
        if not self.lrs:
            raise InputError("'lrs': RTT needs at least one learning rate (the list is empty)")
        if any(not lr > 0 for lr in self.lrs):
            raise InputError(f"'lrs': learning rates must be positive (got {list(self.lrs)})")
        if not 0 < self.fit_t <= 1:
            raise InputError(f"'fit_t' must be in (0, 1] (got {self.fit_t})")
        if not 0 <= self.fit_margin < 1:
            raise InputError(f"'fit_margin' must be in [0, 1) (got {self.fit_margin})")
        if self.noise_facts < 0:
            raise InputError(f"'noise_facts' must be 0 or more (got {self.noise_facts})")
        if self.edge_alpha is not None and not 0 < self.edge_alpha < 1:
            raise InputError(f"'edge_alpha' must be in (0, 1) (got {self.edge_alpha})")
        if self.budget_minutes is not None:
            check_float(self.budget_minutes, "'budget_minutes'", positive=True)
        if self.looks < 1:
            raise InputError(f"'looks' must be at least 1 (got {self.looks})")
        if self.extend_rounds < 0:
            raise InputError(f"'extend_rounds' must be 0 or more (got {self.extend_rounds})")
        if not self.max_lr > 0:
            raise InputError(f"'max_lr' must be positive (got {self.max_lr})")
        for name in ("epochs", "batch_size", "patience", "rotations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"'{name}' must be at least 1 (got {value})")
        if self.scorer not in SCORERS:
            raise InputError(f"unknown scorer '{self.scorer}' (choose from {', '.join(SCORERS)})")
        if self.fmt not in LOSS_FORMATS:
            raise InputError(
                f"'loss_format': unknown loss format '{self.fmt}' (choose from {', '.join(LOSS_FORMATS)})"
            )

    @property
    def fmt(self) -> str:
        return self.loss_format or default_format(self.scorer)
