"""Activation divergence: how far a model's residuals moved from the original's, layer by layer."""

from __future__ import annotations

import torch


def divergence(original: torch.Tensor, other: torch.Tensor) -> dict[str, list[float]]:
    """Per layer, the mean cosine similarity and mean relative L2 distance ‖b − a‖ / ‖a‖ between
    matching rows of `original` and `other` ([layers, n, d] each)."""
    a, b = original.double(), other.double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).mean(-1)
    rel = ((b - a).norm(dim=-1) / a.norm(dim=-1).clamp(min=1e-12)).mean(-1)
    return {"cosine": cos.tolist(), "rel_l2": rel.tolist()}
