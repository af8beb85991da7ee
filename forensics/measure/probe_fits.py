"""The probes' fits and predictions for the probes lens: letter probes (multinomial, over the letters)
on prompt residuals, choice-scoring probes on each choice's features, each with its control task and
closed-form ridge screen, every rotation in one solve where one strength is given."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forensics.config import check_seeds
from forensics.errors import InputError
from probes.choice import fit_choice, fit_choice_cv, predict_choice, ridge_choice
from probes.linear import LogisticProbe, RidgeProbe, fit_batched, restricted_argmax


@dataclass(frozen=True)
class ProbeSettings:
    """Probe grid. One strength skips the inner cross-validation (the demo's light grid)."""

    Cs: tuple[float, ...] = (1.0,)
    folds: int = 3
    max_iter: int = 200
    tol: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        if not self.Cs or any(not c > 0 for c in self.Cs):
            raise InputError(f"'Cs': L2 strengths must be positive, at least one (got {list(self.Cs)})")
        if self.folds < 2:
            raise InputError(f"'folds' must be at least 2 (got {self.folds})")
        if self.max_iter < 1:
            raise InputError(f"'max_iter' must be at least 1 (got {self.max_iter})")
        if not self.tol > 0:
            raise InputError(f"'tol' must be positive (got {self.tol})")
        check_seeds((self.seed,), "'seed'")


Weights = tuple[torch.Tensor, torch.Tensor]  # a fitted probe per layer: W [layers, d, K], b [layers, K]


def predict(weights, F: torch.Tensor, allowed) -> np.ndarray:
    """[layers, n] each layer's pick among a fact's own choices: a letter probe's (W, b) on prompt
    residuals F [layers, n, d], or a choice-scoring probe's W [layers, d] on statements
    F [layers, n, K, d]."""
    if not isinstance(weights, tuple):
        return predict_choice(weights, F, allowed).numpy()
    W, b = weights
    logits = torch.einsum("lnd,ldk->lnk", F.to(W.dtype), W) + b[:, None, :]
    return restricted_argmax(logits, torch.as_tensor(allowed)).numpy()


def ridge_screen(F: torch.Tensor, y, allowed, train, test) -> np.ndarray:
    """[layers, test] the closed-form ridge screen's picks, trained on `train` (the probe's kind)."""
    if F.ndim == 4:
        W = ridge_choice(F[:, train], y[train], allowed[train])
        return predict_choice(W, F[:, test], allowed[test]).numpy()
    return RidgeProbe().fit(F[:, train], y[train], allowed[train]).predict(F[:, test], allowed[test])


def fit_rotations(F, y, y_control, allowed, trains, settings: ProbeSettings):
    """Probe and control-task probe per rotation and the C chosen per layer: letter probes' (W, b) on
    prompt residuals [layers, n, d], choice-scoring probes' W on statements [layers, n, K, d]. With one
    strength, every rotation and the control task are fitted in one solve."""
    choice = F.ndim == 4
    if len(settings.Cs) > 1:
        probes, controls, chosen = [], [], []
        for train in trains:
            if choice:
                cv = (settings.Cs, settings.folds, settings.seed, settings.max_iter, settings.tol)
                probe, C = fit_choice_cv(F[:, train], y[train], allowed[train], *cv)
                control, _ = fit_choice_cv(F[:, train], y_control[train], allowed[train], *cv)
            else:
                fitted = make_probe(settings).fit(F[:, train], y[train], allowed[train])
                other = make_probe(settings).fit(F[:, train], y_control[train], allowed[train])
                probe, control = (fitted.coef_, fitted.intercept_), (other.coef_, other.intercept_)
                C = fitted.C_
            probes.append(probe)
            controls.append(control)
            chosen.append(C)
        return probes, controls, chosen
    n, r = F.shape[1], len(trains)
    masks = torch.zeros(2 * r, n, dtype=torch.bool)
    for i, train in enumerate(trains):
        masks[i, train] = masks[r + i, train] = True
    ys = torch.as_tensor(np.stack([y] * r + [y_control] * r), dtype=torch.long)
    if choice:
        fit = (settings.Cs[0], settings.max_iter, settings.tol)
        W = fit_choice(F, ys, masks, torch.as_tensor(allowed), *fit)
        fitted = [W[:, i] for i in range(2 * r)]
    else:
        W, b = fit_batched(
            F, ys, masks, settings.Cs, allowed.shape[1], settings.max_iter, settings.tol, torch.float32
        )
        fitted = [(W[:, i, 0], b[:, i, 0]) for i in range(2 * r)]
    chosen = [[settings.Cs[0]] * F.shape[0]] * r
    return fitted[:r], fitted[r:], chosen


def make_probe(settings: ProbeSettings) -> LogisticProbe:
    """An unfitted probe with the settings' grid."""
    return LogisticProbe(settings.Cs, settings.folds, settings.seed, settings.max_iter, settings.tol)
