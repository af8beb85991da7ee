"""What an unlearning method is: its settings and its loss, as one registry entry (forensics.unlearn)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

# passes over the forget set per run on a pretrained model (`UnlearnSettings.start` REAL) unless a method
# says otherwise: 30 steps of 8 over 96 facts met the rule for GD and NPO on SmolLM2's two kinds; at 136
# facts 30 steps left GD at forget 0.353 (the rule: at most 0.35), 43 (2.5 passes) met it
REAL_PASSES = 2.5


def as_given(params: dict, n_layers: int) -> dict:
    return params


@dataclass(frozen=True, kw_only=True)
class Method:
    """One method: its sweep's first round (`grid`), the demo's point, its first point on a pretrained
    ~100M model (`real`) and its passes over the forget set there (`real_passes`), its steps, the
    streams it trains on, its retain weight (which the adaptive sweep raises; None: the sweep lowers
    the learning rate instead) and its loss; optionally the
    parameters it trains (`trainable`), how its hyperparameters resolve on a model (`resolve`, given
    the number of blocks), which of them a user may fix at every point (`fixable`) and what it does to
    the model before training (`prepare`: UNDO's noise)."""

    name: str
    grid: tuple[dict, ...]
    demo: dict
    real: dict
    real_passes: float
    steps: int
    streams: tuple[str, ...]
    retain_key: str | None
    loss: Callable[[dict, dict], Callable]
    trainable: Callable | None = None
    resolve: Callable[[dict, int], dict] = as_given
    fixable: tuple[str, ...] = ()
    prepare: Callable | None = None  # (model, params, seed): changes the starting model before training


def method_of(module: ModuleType) -> Method:
    """A method module's registry entry, from its own settings: `GRID`, `DEMO`, `REAL`, `STEPS`,
    `STREAMS`, `RETAIN_KEY` and `loss`; `REAL_PASSES`, `trainable`, `resolve`, `FIXABLE` and `prepare`
    where it has them."""
    return Method(
        name=module.__name__.rsplit(".", 1)[-1],
        grid=tuple(module.GRID),
        demo=module.DEMO,
        real=module.REAL,
        real_passes=getattr(module, "REAL_PASSES", REAL_PASSES),
        steps=module.STEPS,
        streams=module.STREAMS,
        retain_key=module.RETAIN_KEY,
        loss=module.loss,
        trainable=getattr(module, "trainable", None),
        resolve=getattr(module, "resolve", as_given),
        fixable=getattr(module, "FIXABLE", ()),
        prepare=getattr(module, "prepare", None),
    )
