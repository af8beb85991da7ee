"""What an unlearning method is: its settings and its loss, as one registry entry (forensics.unlearn)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType


def as_given(params: dict, n_layers: int) -> dict:
    return params


@dataclass(frozen=True, kw_only=True)
class Method:
    """One method: its sweep's first round (`grid`), the demo's point, its first point on a pretrained
    ~100M model (`real`), its steps, the streams it trains on, its retain weight (which the adaptive
    sweep raises; None: the sweep lowers the learning rate instead) and its loss; optionally the
    parameters it trains (`trainable`), how its hyperparameters resolve on a model (`resolve`, given
    the number of blocks) and which of them a user may fix at every point (`fixable`)."""

    name: str
    grid: tuple[dict, ...]
    demo: dict
    real: dict
    steps: int
    streams: tuple[str, ...]
    retain_key: str | None
    loss: Callable[[dict, dict], Callable]
    trainable: Callable | None = None
    resolve: Callable[[dict, int], dict] = as_given
    fixable: tuple[str, ...] = ()


def method_of(module: ModuleType) -> Method:
    """A method module's registry entry, from its own settings: `GRID`, `DEMO`, `REAL`, `STEPS`,
    `STREAMS`, `RETAIN_KEY` and `loss`; `trainable`, `resolve` and `FIXABLE` where it has them."""
    return Method(
        name=module.__name__.rsplit(".", 1)[-1],
        grid=tuple(module.GRID),
        demo=module.DEMO,
        real=module.REAL,
        steps=module.STEPS,
        streams=module.STREAMS,
        retain_key=module.RETAIN_KEY,
        loss=module.loss,
        trainable=getattr(module, "trainable", None),
        resolve=getattr(module, "resolve", as_given),
        fixable=getattr(module, "FIXABLE", ()),
    )
