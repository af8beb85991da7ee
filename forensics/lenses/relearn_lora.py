"""RTT through LoRA adapters: the same attack for models too big to copy (asked for by name)."""

from __future__ import annotations

from forensics.lenses.relearn import attack

LENS = attack("relearn_lora", "LoRA RTT", "lora", default=False)
