"""Quantization (Zhang et al., 2024): forget accuracy after rounding the weights to int8/int4."""

from __future__ import annotations

import numpy as np

from forensics.attacks.quantize import QuantizeSettings
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, everything
from forensics.outcomes import Reading, unbits


def run(ctx: Context) -> dict:
    from forensics.attacks.quantize import quantize_attack

    bits = ctx.settings("quantize").bits
    return quantize_attack(
        ctx.models, ctx.sets, ctx.scorer, bits, ctx.results.get("accuracy"), runtime=ctx.runtime
    )


def _rows(results: dict, model: str, field: str) -> dict[Reading, np.ndarray]:
    quant = results.get("quantize", {})
    out = {}
    for b in quant.get("bits", []):
        table = quant["models"].get(model, {}).get(f"int{b}", {})
        if field in table:
            out[Reading(f"int{b} quantization")] = unbits(table[field])[None]
    return out


def outcomes(results: dict, model: str) -> Outcomes:
    return {k: (v, everything(results)) for k, v in _rows(results, model, "forget_correct").items()}


def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
    return _rows(results, model, "control_correct")


LENS = Lens(
    name="quantize",
    kind=INFORMATION,
    run=run,
    settings=QuantizeSettings,
    outcomes=outcomes,
    control_outcomes=control_outcomes,
    needs=("accuracy",),  # its full-precision row is accuracy's per-fact table when that ran
)
