"""RTT through LoRA adapters: the same attack for models too big to copy (asked for by name)."""

from __future__ import annotations

from forensics.attacks.relearn import RelearnSettings
from forensics.lenses.relearn import DEMO_RTT, REAL_RTT, attack

PRESETS = {
    "full": RelearnSettings(method="lora", lrs=(1e-3, 3e-3, 1e-2)),
    "demo": RelearnSettings(method="lora", lrs=(3e-3, 1e-2, 3e-2), **DEMO_RTT),
    "real": RelearnSettings(method="lora", lrs=(3e-4, 1e-3, 3e-3), max_lr=1e-2, **REAL_RTT),
    "paper": RelearnSettings(method="lora", lrs=(3e-4, 1e-3, 3e-3), epochs=6, batch_size=8, max_lr=1e-2),
}

LENS = attack("relearn_lora", "LoRA RTT", "lora", PRESETS, default=False)
