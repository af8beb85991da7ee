"""The lens registry: every lens a study can run, one module each, in the order they run (DESIGN §12).

Adding a lens is one module defining `LENS` (forensics.lenses.base.Lens) and one line below.
"""

from __future__ import annotations

from forensics.lenses import (
    ablate,
    accuracy,
    activations,
    formats,
    geometry,
    incontext,
    localize,
    probes,
    quantize,
    relearn,
    relearn_lora,
    tuned,
    uds,
    weights,
)
from forensics.lenses.base import ACTION, INFORMATION, Context, Lens

REGISTRY: dict[str, Lens] = {
    m.LENS.name: m.LENS
    for m in (
        accuracy,
        relearn,
        relearn_lora,
        quantize,
        probes,
        ablate,
        weights,
        activations,
        localize,
        incontext,
        formats,
        tuned,
        geometry,
        uds,
    )
}

__all__ = ["ACTION", "INFORMATION", "REGISTRY", "Context", "Lens"]
