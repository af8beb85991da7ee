"""Tuned lens on cached residuals (Belrose et al., 2023): per layer an affine translator into the final
layer's residual space, read out through the model's own final norm and unembedding.

Tensors in, translators and log-probabilities out (no model is loaded here). Each translator starts
from the least-squares affine map from layer ℓ's residual to the final residual (ridge-regularised;
exact when the map is affine), then is refined to match the model's own final next-token
distribution (KL from the final distribution, as the tuned lens is trained) for `kl_steps` Adam
steps. The identity is the logit lens; the translator may only be fitted on facts the study is not
asking about (retain and near-retain, never a forget fact).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probes.lens import Readout


@dataclass(frozen=True)
class Translators:
    """Per layer an affine map: resid [layers, n, d] → A[l] resid + b[l]."""

    A: torch.Tensor  # [layers, d, d]
    b: torch.Tensor  # [layers, d]

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        """Every layer's residuals [layers, ..., d] translated by its own map."""
        A, b = self.A.to(resid.device), self.b.to(resid.device)
        shape = (len(A),) + (1,) * (resid.dim() - 2) + (A.shape[-1],)
        return torch.einsum("l...d,led->l...e", resid.float(), A) + b.view(shape)


def least_squares(X: torch.Tensor, Y: torch.Tensor, ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map (A, b) minimising ‖A x + b − y‖² + ridge·‖A − I‖²_F over rows of X [n, d] → Y
    [n, d] (shrunk toward the identity, the logit lens, where the data say little)."""
    X, Y = X.double(), Y.double()
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    d = X.shape[1]
    spread = float((Xc**2).sum() / max(1, X.shape[0]))
    scale = ridge * (spread if spread > 0 else 1.0)  # a constant layer (embedding of a fixed token): A = I
    eye = torch.eye(d, dtype=X.dtype)
    A = torch.linalg.solve(Xc.T @ Xc + scale * eye, Xc.T @ Yc + scale * eye).T
    return A.float(), (my - mx @ A.T).float()


def fit(
    resid: torch.Tensor,
    final: torch.Tensor,
    readout: Readout,
    kl_steps: int = 0,
    lr: float = 1e-3,
    ridge: float = 1e-3,
) -> Translators:
    """Translators for every layer from residuals [layers, n, d] at positions whose final residual
    (before the final norm) is `final` [n, d]: least squares, then `kl_steps` of Adam on
    KL(final distribution ‖ translated distribution)."""
    pairs = [least_squares(layer, final, ridge) for layer in resid]
    if kl_steps:
        with torch.no_grad():
            target = torch.log_softmax(readout(final), -1)
        pairs = [
            _refine(layer, target, readout, A, b, kl_steps, lr)
            for layer, (A, b) in zip(resid, pairs, strict=True)
        ]
    return Translators(torch.stack([a for a, _ in pairs]), torch.stack([c for _, c in pairs]))


def _refine(
    resid: torch.Tensor, target: torch.Tensor, readout: Readout, A, b, steps: int, lr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's translator after `steps` of Adam on KL(target ‖ translated) (one layer at a time:
    a vocabulary's worth of logits per position is large)."""
    A, b = A.clone().requires_grad_(True), b.clone().requires_grad_(True)
    opt = torch.optim.Adam([A, b], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        mine = torch.log_softmax(readout(resid.float() @ A.T + b), -1)
        torch.sum(target.exp() * (target - mine), -1).mean().backward()
        opt.step()
    return A.detach(), b.detach()
