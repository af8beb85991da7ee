"""Loss pieces shared by the unlearning methods: target-token NLL and sequence log-likelihoods."""

from __future__ import annotations

import torch

from forensics.models.tokens import target_nll


def mean_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL per target token of a batch."""
    nll, count = target_nll(model, batch)
    return nll.sum() / count.sum().clamp(min=1)


def sequence_logprob(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probability of each row's target tokens."""
    nll, _ = target_nll(model, batch)
    return -nll
