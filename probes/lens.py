"""Logit lens on cached residuals: the model's own final norm and unembedding read every layer.

Tensors in, accuracies out (no model is loaded here): the caller passes the final norm's
parameters and the unembedding. At the last layer the lens is the model's own computation, so
its accuracy equals the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Readout:
    """Final norm + unembedding. `norm`: "rms", "rms_offset" (Gemma: × (1 + w)) or "layer"; `weight`
    None for a norm without an affine part (OLMo); `softcap` c: logits → c·tanh(logits / c) (Gemma 2)."""

    norm: str
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float
    unembed: torch.Tensor  # [vocab, d]
    unembed_bias: torch.Tensor | None = None
    softcap: float | None = None

    def to(self, device) -> Readout:
        """The same readout with its tensors on `device`."""
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}
        return Readout(**moved)

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        x = resid.float()
        if self.norm == "layer":
            x = torch.nn.functional.layer_norm(x, x.shape[-1:], _f(self.weight), _f(self.bias), self.eps)
        else:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            if self.weight is not None:
                x = x * (1 + self.weight.float() if self.norm == "rms_offset" else self.weight.float())
        logits = x @ self.unembed.float().T
        if self.unembed_bias is not None:
            logits = logits + self.unembed_bias.float()
        return logits if self.softcap is None else self.softcap * torch.tanh(logits / self.softcap)


def _f(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def letter_lens(resid: torch.Tensor, readout: Readout, letter_ids: list[int], n_choices) -> torch.Tensor:
    """Per layer, the predicted choice: argmax of the lens logits at the final prompt position over
    each fact's letters. resid [layers, n, d]; n_choices [n]. Returns [layers, n]."""
    logits = torch.stack([readout(layer)[:, letter_ids] for layer in resid])
    n_choices = torch.as_tensor(n_choices)
    allowed = torch.arange(len(letter_ids))[None, :] < n_choices[:, None]
    return torch.where(allowed, logits, -torch.inf).argmax(-1)


def choice_lens(
    resid: torch.Tensor, seqs: torch.Tensor, cols: torch.Tensor, tokens: torch.Tensor, readout: Readout
) -> torch.Tensor:
    """Per layer, the log-probability of each (sequence, position, token) term when layer ℓ's residual
    at that position is read out: log p(tokens[i] | seqs[i], up to cols[i]). resid [layers, seqs, T, d].
    Each (sequence, position) is read out once however many terms read it (" 1913" … " 1916" read
    their last digits at one position). Returns [layers, terms]."""
    positions, which = torch.unique(torch.stack([seqs, cols], 1), dim=0, return_inverse=True)
    out = torch.zeros(resid.shape[0], len(tokens), device=resid.device)
    for layer in range(resid.shape[0]):
        logp = torch.log_softmax(readout(resid[layer, positions[:, 0], positions[:, 1]]), -1)
        out[layer] = logp[which, tokens]
    return out
