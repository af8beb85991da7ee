"""Tuned lens (Belrose et al., 2023): per layer an affine translator into the final residual space,
fitted on retain and near-retain prompts only (never a forget fact) to match the model's own final
residual (least squares, optionally refined on the final distribution), then read through the
model's own readout on the forget prompts, restricted to each question's choices.

Unlike the class probe, which learns one class per distinct answer and can barely name an answer it
saw a handful of times, it reads any answer through the model's own unembedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.errors import InputError
from forensics.lenses.base import INFORMATION, Context, Lens, Outcomes, everything
from forensics.outcomes import Reading, bits, unbits

LABEL = "tuned lens"


@dataclass(frozen=True)
class TunedSettings:
    ridge: float = 0.1  # shrinkage toward the identity (the logit lens), × the residuals' variance
    kl_steps: int = 0  # Adam steps on KL(final ‖ translated) after least squares (0: least squares)
    lr: float = 1e-3

    def __post_init__(self):
        if self.ridge <= 0 or self.kl_steps < 0 or self.lr <= 0:
            raise InputError(
                f"[lenses.tuned] needs ridge > 0, kl_steps >= 0, lr > 0 (got {self.ridge}, "
                f"{self.kl_steps}, {self.lr})"
            )


def run(ctx: Context) -> dict:
    from forensics.measure.probing import features, layer_names, lens_correct
    from forensics.models.arch import arch_of
    from forensics.models.checkpoint import boot_bridge
    from forensics.models.digest import checkpoint_digest
    from probes.tuned import fit

    settings: TunedSettings = ctx.settings("tuned")
    fitted_on = [*ctx.sets.near_retain, *ctx.sets.retain]
    forget, control = ctx.sets.forget_facts(), ctx.sets.control_facts()
    out: dict = {"fitted_on": len(fitted_on), "models": {}}
    for name, path in ctx.models.items():
        bridge, digest = boot_bridge(path, runtime=ctx.runtime), checkpoint_digest(path)
        readout = arch_of(bridge.original_model.config).readout(bridge.original_model)
        X = features(bridge, fitted_on, ctx.scorer, ctx.cache, digest).float()
        translators = fit(X, X[-1], readout, settings.kl_steps, settings.lr, settings.ridge)
        right = lens_correct(bridge, [*forget, *control], ctx.scorer, ctx.cache, digest, translators)
        out["layers"] = layer_names(right.shape[0] - 1)
        entry = {
            "correct": [bits(row) for row in right[:, : len(forget)]],
            "acc": [float(row.mean()) for row in right[:, : len(forget)]],
        }
        if control:
            entry["control_correct"] = [bits(row) for row in right[:, len(forget) :]]
        out["models"][name] = entry
    return out


def _layered(results: dict, model: str, key: str) -> dict[Reading, np.ndarray]:
    section = results.get("tuned", {})
    rows = section.get("models", {}).get(model, {}).get(key, [])
    return {
        Reading(LABEL, str(layer)): unbits(row)[None]
        for layer, row in zip(section.get("layers", []), rows, strict=False)
    }


def outcomes(results: dict, model: str) -> Outcomes:
    return {k: (v, everything(results)) for k, v in _layered(results, model, "correct").items()}


def control_outcomes(results: dict, model: str) -> dict[Reading, np.ndarray]:
    return _layered(results, model, "control_correct")


LENS = Lens(
    name="tuned",
    kind=INFORMATION,
    run=run,
    settings=TunedSettings,
    outcomes=outcomes,
    control_outcomes=control_outcomes,
)
