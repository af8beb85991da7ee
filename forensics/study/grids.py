"""The grids: presets of every lens's settings (`full`, the demo's lighter `demo`, `real` for a
pretrained ~100M model on 2 CPU cores, `paper` for a GPU), which `[lenses.<lens>]` tables override."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from forensics.attacks.quantize import QuantizeSettings
from forensics.attacks.relearn import RelearnSettings
from forensics.lenses import REGISTRY
from forensics.measure.probing import ProbeSettings


@dataclass(frozen=True)
class Grid:
    """The settings of every lens that has a grid."""

    relearn: RelearnSettings = RelearnSettings()
    relearn_lora: RelearnSettings = RelearnSettings(method="lora", lrs=(1e-3, 3e-3, 1e-2))
    localize: RelearnSettings = RelearnSettings(lrs=(1e-3,), epochs=4)
    probes: ProbeSettings = ProbeSettings()
    quantize: QuantizeSettings = QuantizeSettings()
    # every other lens's settings, where the grid differs from the lens's own defaults
    lenses: Mapping[str, Any] = field(default_factory=dict)

    def of(self, name: str):
        """Lens `name`'s settings under this grid."""
        if name in GRID_FIELDS:
            return getattr(self, name)
        return self.lenses.get(name) or REGISTRY[name].settings()


GRID_FIELDS = ("relearn", "relearn_lora", "localize", "probes", "quantize")  # presets with a field

# what full and LoRA RTT share on the `real` grid: a batch of 8, up to 3 epochs (T of 72 facts is 9 steps
# an epoch), early stop, one seed, 2 rotations of V as the paper's code
REAL_RTT = {"epochs": 3, "batch_size": 8, "patience": 1, "score_retain": False, "seeds": (0,), "rotations": 2}

GRIDS = {
    "full": Grid(),
    # the demo's lighter grid: three learning rates and 8 epochs with early stop on V (once T is fitted),
    # which every model of the demo passes adequacy on at the first round (measured: 59 s for 7 models);
    # V and T scored only, one rotation for layer-restricted RTT (the report names the grid that ran)
    "demo": Grid(
        relearn=RelearnSettings(
            lrs=(1e-3, 3e-3, 1e-2), epochs=8, patience=1, score_retain=False, seeds=(0,), max_lr=3e-2
        ),
        relearn_lora=RelearnSettings(
            method="lora", lrs=(3e-3, 1e-2, 3e-2), epochs=8, patience=1, score_retain=False, seeds=(0,)
        ),
        localize=RelearnSettings(
            lrs=(1e-3,), epochs=2, patience=1, score_retain=False, rotations=1, seeds=(0,)
        ),
        # fewer L-BFGS iterations: V accuracy within ±0.02 of the converged probe on the demo world
        probes=ProbeSettings(max_iter=100),
    ),
    # a pretrained ~100M model on 2 CPU cores (`forensics real`): learning rates for its scale (at T = 72
    # facts, 3e-4 already takes SmolLM2's original V from 1.00 to 0.79 in an epoch; 3e-3 is the cap),
    # grown by the adequacy rounds; localization at every fifth block and the last
    "real": Grid(
        relearn=RelearnSettings(lrs=(1e-4, 3e-4), max_lr=3e-3, **REAL_RTT),
        relearn_lora=RelearnSettings(method="lora", lrs=(3e-4, 1e-3, 3e-3), max_lr=1e-2, **REAL_RTT),
        localize=RelearnSettings(
            lrs=(1e-4,),
            epochs=2,
            batch_size=8,
            patience=1,
            score_retain=False,
            rotations=1,
            seeds=(0,),
            layers=(0, 5, 10, 15, 20, 25, 29),
        ),
        probes=ProbeSettings(max_iter=100),
    ),
    # the paper's grid on a pretrained ~100M model (a GPU's job: bench/gpu_check.sh): learning rates
    # on a log range, 6 epochs, 3 seeds, full and LoRA RTT, localization at every block
    "paper": Grid(
        relearn=RelearnSettings(
            lrs=(3e-5, 1e-4, 3e-4, 1e-3), epochs=6, batch_size=8, max_lr=3e-3, rotations=2
        ),
        relearn_lora=RelearnSettings(
            method="lora", lrs=(3e-4, 1e-3, 3e-3), epochs=6, batch_size=8, max_lr=1e-2
        ),
        localize=RelearnSettings(lrs=(1e-4,), epochs=4, batch_size=8, rotations=1),
        probes=ProbeSettings(),
    ),
}
