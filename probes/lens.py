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

    def __call__(self, resid: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the vocabulary, [..., vocab]; with `tokens` [...], only each row's own token's
        logit, [...] (no product with the whole unembedding)."""
        x = self.normed(resid)
        if tokens is None:
            logits = x @ self.unembed.float().T
            bias = self.unembed_bias
        else:
            logits = (x * self.unembed[tokens].float()).sum(-1)
            bias = None if self.unembed_bias is None else self.unembed_bias[tokens]
        if bias is not None:
            logits = logits + bias.float()
        return logits if self.softcap is None else self.softcap * torch.tanh(logits / self.softcap)

    def normed(self, resid: torch.Tensor) -> torch.Tensor:
        """The final norm's output, [..., d] in float32."""
        x = resid.float()
        if self.norm == "layer":
            return torch.nn.functional.layer_norm(x, x.shape[-1:], _f(self.weight), _f(self.bias), self.eps)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            x = x * (1 + self.weight.float() if self.norm == "rms_offset" else self.weight.float())
        return x

    def products(self, resid: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """[..., d]: each dimension's share of each row's own token's logit (their sum, plus the bias,
        is the logit before any softcap): what a probe reweighting the lens reads."""
        return self.normed(resid) * self.unembed[tokens].float()


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
    resid: torch.Tensor,
    seqs: torch.Tensor,
    cols: torch.Tensor,
    tokens: torch.Tensor,
    readout: Readout,
    shared: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per layer, the log-probability of each (sequence, position, token) term when layer ℓ's residual
    at that position is read out: log p(tokens[i] | seqs[i], up to cols[i]). resid [layers, seqs, T, d].
    Each (sequence, position) is read out once however many terms read it. A term marked `shared` is
    read at a position every choice of its fact passes through: there its logit alone is returned
    (the log-probability plus the position's log-normaliser, the same for every choice: the argmax over
    choices is unchanged) and the whole vocabulary is not read out. Returns [layers, terms]."""
    shared = torch.zeros(len(tokens), dtype=torch.bool) if shared is None else shared.cpu()
    out = torch.zeros(resid.shape[0], len(tokens), device=resid.device)
    full = (~shared).nonzero()[:, 0].to(resid.device)
    if len(full):
        positions, which = torch.unique(torch.stack([seqs[full], cols[full]], 1), dim=0, return_inverse=True)
    part = shared.nonzero()[:, 0].to(resid.device)
    for layer in range(resid.shape[0]):
        if len(full):
            logp = torch.log_softmax(readout(resid[layer, positions[:, 0], positions[:, 1]]), -1)
            out[layer, full] = logp[which, tokens[full]]
        if len(part):
            out[layer, part] = readout(resid[layer, seqs[part], cols[part]], tokens[part])
    return out
