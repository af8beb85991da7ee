"""The lens registry: every lens a study can run, one module each, in the order they run (DESIGN §12).

Adding a lens is one module under forensics/lenses/ defining `LENS` (forensics.lenses.base.Lens) and
its name in `NAMES`.
"""

from __future__ import annotations

from importlib import import_module

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

__all__ = ["ACTION", "INFORMATION", "NAMES", "REGISTRY", "Context", "Lens"]
