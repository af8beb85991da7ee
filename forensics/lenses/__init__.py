"""The lens registry: every lens a study can run, one module each, in the order they run (docs/design.md §12).

Adding a lens is one module under forensics/lenses/ defining `LENS` (forensics.lenses.base.Lens) and
its name in `NAMES`.
"""

from __future__ import annotations

from importlib import import_module

from forensics.errors import InputError
from forensics.lenses.base import ACTION, INFORMATION, Context, Lens

NAMES = (
    "accuracy",
    "relearn",
    "relearn_lora",
    "quantize",
    "probes",
    "ablate",
    "weights",
    "activations",
    "localize",
    "incontext",
    "formats",
    "tuned",
    "geometry",
    "uds",
)
REGISTRY: dict[str, Lens] = {name: import_module(f"forensics.lenses.{name}").LENS for name in NAMES}


def run_order(names) -> list[str]:
    """The lenses `names` in the order a study runs them: registry order, except that a lens's needs
    (of those named) run just before it."""
    named, done = [n for n in NAMES if n in names], []

    def place(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise InputError(f"lenses {', '.join(path)} need each other: no order runs them")
        for need in REGISTRY[name].needs:
            if need in named:
                place(need, (*path, name))
        done.append(name)

    for name in named:
        place(name, ())
    return done


def check_lenses(lenses, where: str = "[lenses] 'run'") -> None:
    """The lenses a study runs: at least one, each a registered lens named once, accuracy among them
    (the reference check reads the original's accuracy: without it no verdict can be trusted)."""
    if not lenses:
        raise InputError(f"{where}: an empty list; name the lenses to run ('accuracy' at least)")
    for lens in lenses:
        if lens not in REGISTRY:
            raise InputError(f"{where}: unknown lens '{lens}' (choose from {', '.join(NAMES)})")
    twice = [lens for i, lens in enumerate(lenses) if lens in lenses[:i]]
    if twice:
        raise InputError(f"{where}: lens '{twice[0]}' named twice")
    if "accuracy" not in lenses:
        raise InputError(
            f"{where}: 'accuracy' is needed (the reference check reads the original's accuracy on its "
            "forget facts; add it)"
        )


__all__ = ["ACTION", "INFORMATION", "NAMES", "REGISTRY", "Context", "Lens", "check_lenses", "run_order"]
