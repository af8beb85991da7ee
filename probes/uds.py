"""The Unlearning Depth Score (UDS; the unlearning-depth-score project): how much of the knowledge gap
that patching the retain model's activations opens in the full model, the unlearned model's
activations open too, per layer and over the layers where the retain model lacks the knowledge.

Tensors in, scores out. For one fact and layer ℓ, Δˢ_ℓ = (mean log-prob of the answer tokens in the
full model) − (the same with source S's residual after ℓ patched in at the answer positions); S1 is
the retain (exact-unlearning) model, S2 the unlearned one. The layers where the retain model lacks
the fact are FT = {ℓ : Δ¹_ℓ > τ}; UDS = Σ_FT Δ¹_ℓ · clip(Δ²_ℓ / Δ¹_ℓ, 0, 1) / Σ_FT Δ¹_ℓ: 1 when
the unlearned model lacks the fact wherever the retain model does, 0 when it still holds it there.
A fact with no FT layer has no score (NaN).
"""

from __future__ import annotations

import numpy as np

TAU = 0.05


def uds(delta_retain: np.ndarray, delta_unlearned: np.ndarray, tau: float = TAU) -> np.ndarray:
    """Per fact UDS from Δ¹ and Δ² [facts, layers]; NaN for a fact with no layer above `tau`."""
    d1, d2 = np.asarray(delta_retain, float), np.asarray(delta_unlearned, float)
    ft = d1 > tau
    ratio = np.clip(np.divide(d2, d1, out=np.zeros_like(d2), where=ft), 0.0, 1.0)
    weight = np.where(ft, d1, 0.0).sum(1)
    score = np.where(ft, d1 * ratio, 0.0).sum(1)
    return np.divide(score, weight, out=np.full(len(d1), np.nan), where=weight > 0)
