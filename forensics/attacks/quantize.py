"""Quantization attack: round every matrix-multiply weight to int8/int4 per output channel, then re-score.

Round-to-nearest, symmetric, one scale per output row; the weights are dequantized back to float so
the same scorer runs. The original is quantized too, so a drop caused by rounding itself shows.
On CUDA, NF4 (bitsandbytes 4-bit, loaded through the one checkpoint loader) is added beside RTN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from forensics.errors import InputError, warn
from forensics.facts.core import Sets
from forensics.models.arch import arch_of
from forensics.models.checkpoint import load_checkpoint
from forensics.models.runtime import Runtime, in_memory
from forensics.models.scoring import accuracy_table


@dataclass(frozen=True)
class QuantizeSettings:
    """The bit widths the attack rounds the weights to."""

    bits: tuple[int, ...] = (8, 4)

    def __post_init__(self):
        if not self.bits or any(not 2 <= b <= 16 for b in self.bits):
            raise InputError(f"'bits': each must be in 2..16, at least one (got {list(self.bits)})")


def rtn(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-to-nearest symmetric quantization per output channel (row), returned dequantized."""
    if not 2 <= bits <= 16:
        raise InputError(f"quantization bits must be in 2..16 (got {bits})")
    qmax = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny) / qmax
    return (weight / scale).round().clamp(-qmax, qmax) * scale


@torch.no_grad()
def quantize_(model: torch.nn.Module, bits: int) -> int:
    """Quantize the weight of every matrix multiply in the blocks and the unembedding in place
    (GPT-2's Conv1D stores [in, out]: its output channels are columns); returns how many."""
    from transformers.pytorch_utils import Conv1D

    layers = arch_of(model.config).quantizable(model)
    for _, module in layers:
        w = module.weight
        w.copy_(rtn(w.T, bits).T if isinstance(module, Conv1D) else rtn(w, bits))
    return len(layers)


def _has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        warn("CUDA without bitsandbytes: the NF4 quantization attack is skipped (pip install '.[gpu]')")
        return False
    return True


def quantize_attack(
    models: Mapping[str, Path],
    sets: Sets,
    scorer: str = "choice",
    bits: Sequence[int] = (8, 4),
    full: Mapping[str, dict] | None = None,
    runtime: Runtime = Runtime(),
) -> dict:
    """Accuracy of each model at full precision and at each bit width (round to nearest); on CUDA
    also NF4 through bitsandbytes (the 4-bit quantizers the published recovery results used);
    `full` reuses accuracy tables already measured at full precision."""
    nf4 = runtime.gpus() > 0 and _has_bitsandbytes()
    result: dict = {"bits": list(bits), "nf4": nf4, "scorer": scorer, "models": {}}
    for name, path in models.items():
        model, tok = load_checkpoint(path, runtime)
        in_memory(model, "the quantization attack")
        state = {k: v.clone() for k, v in model.state_dict().items()}
        entry = {"full": (full or {}).get(name) or accuracy_table(model, tok, sets, scorer)}
        for b in bits:
            model.load_state_dict(state)
            entry["linear_weights"] = quantize_(model, b)
            entry[f"int{b}"] = accuracy_table(model, tok, sets, scorer, per_fact=True)
        if nf4:
            del model
            quantized, _ = load_checkpoint(path, replace(runtime, quantize="nf4"))
            entry["nf4"] = accuracy_table(quantized, tok, sets, scorer, per_fact=True)
            del quantized
        result["models"][name] = entry
    return result
