"""Loss pieces shared by the unlearning methods: target-token NLL and sequence log-likelihoods."""

from __future__ import annotations

import torch

from forensics.models.tokens import logits_of, sequence_nll


def mean_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL per target token of a batch."""
    nll, count = sequence_nll(logits_of(model, batch), batch["labels"])
    return nll.sum() / count.sum().clamp(min=1)


def sequence_logprob(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probability of each row's target tokens."""
    nll, _ = sequence_nll(logits_of(model, batch), batch["labels"])
    return -nll
