"""Linear probes: multinomial logistic regression for every layer × fold × L2 strength, batched.

The problems are independent and strictly convex, so minimising the sum of a batch of them with one
L-BFGS run over the stacked parameters reaches each problem's own optimum. One run per strength:
the problems sharing a strength are batched over layers and folds. Each problem's objective is
scikit-learn's (`C · Σ CE + ½‖W‖²`, intercept unpenalised), divided by `C · n` for conditioning; the
argmin is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def fit_batched(
    X: torch.Tensor,
    y: torch.Tensor,
    train_mask: torch.Tensor,
    Cs: Sequence[float] | Sequence[Sequence[float]],
    n_classes: int,
    max_iter: int = 500,
    tol: float = 1e-7,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit one probe per (layer, fold, C).

    X: [layers, n, d] features; y: [n] class indices, or [folds, n] for labels that differ per fold
    (e.g. a control task beside the real one); train_mask: [folds, n] rows each fold trains on;
    Cs: strengths shared by every layer, or one list per layer.
    Returns W [layers, folds, Cs, d, K] and b [layers, folds, Cs, K].

    One L-BFGS run per distinct strength, not one over all: a run shares its step lengths and
    curvature pairs among its problems, and strengths 1000× apart differ about as much in curvature,
    so one joint run is paced by the stiff, strongly regularised problems and stops (at `max_iter`)
    with the weakly regularised ones far from their optimum. The runs go from the strongest
    regularisation down, each layer's problems starting where its previous strength's ended (a
    regularisation path: nearby optima, fewer iterations; the optimum does not depend on the start).
    """
    X = X.to(dtype)
    n_layers, n, d = X.shape
    folds = train_mask.shape[0]
    C = torch.as_tensor(list(Cs), dtype=X.dtype, device=X.device)
    C = C[None].expand(n_layers, -1) if C.ndim == 1 else C
    # Solved in centred, unit-variance coordinates: W = V / s, b = c - mean·W. The objective is the
    # same function of (W, b) (the penalty is written on W), so the optimum is too; only L-BFGS's
    # path changes, and on raw residuals (feature scales differing by orders of magnitude) it
    # converges many times faster.
    mean = X.mean(1, keepdim=True)  # [l, 1, d]
    std = X.std(1, keepdim=True)
    scale = torch.where(std > 1e-6 * std.amax(-1, keepdim=True).clamp(min=1e-30), std, 1.0)  # constant: as is
    Z = (X - mean) / scale
    inv = (1 / scale)[:, 0, None, :, None]  # [l, 1, d, 1]
    varies = (std[:, 0] > 0).any(-1)  # [l]
    onehot = torch.nn.functional.one_hot(y.to(X.device), n_classes).to(X.dtype)  # [n, K] or [folds, n, K]
    w = train_mask.to(X.device, X.dtype)
    W = torch.zeros(n_layers, folds, C.shape[1], d, n_classes, dtype=X.dtype, device=X.device)
    b = torch.zeros(n_layers, folds, C.shape[1], n_classes, dtype=X.dtype, device=X.device)
    start_V = torch.zeros(n_layers, folds, d, n_classes, dtype=X.dtype, device=X.device)
    start_c = torch.zeros(n_layers, folds, n_classes, dtype=X.dtype, device=X.device)
    for strength in C.unique():  # ascending: the strongest regularisation first
        layers, cols = (C == strength).nonzero(as_tuple=True)
        start = (start_V[layers], start_c[layers])
        V, c = _solve(
            Z[layers], inv[layers], varies[layers], onehot, w, float(strength), start, max_iter, tol
        )
        start_V[layers], start_c[layers] = V, c
        W[layers, :, cols] = V * inv[layers]
        b[layers, :, cols] = c - torch.einsum("md,mfdk->mfk", mean[layers, 0], V * inv[layers])
    return W, b


def _solve(
    Z: torch.Tensor,
    inv: torch.Tensor,
    varies: torch.Tensor,
    onehot: torch.Tensor,
    w: torch.Tensor,
    C: float,
    start: tuple[torch.Tensor, torch.Tensor],
    max_iter: int,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One L-BFGS run over the problems of one strength C: Z [m, n, d] standardised features of m
    layers, inv [m, 1, d, 1] their 1 / scale, w [folds, n] training weights, `start` the (V, c) to
    start from. Returns the weights V [m, folds, d, K] in standardised coordinates and the
    intercepts c [m, folds, K]."""
    m, _, d = Z.shape
    folds, n_classes = w.shape[0], onehot.shape[-1]
    rows = w.sum(1)  # [folds]
    # A layer whose features are the same on every row (e.g. the embedding of a prompt's fixed last
    # token) has Z = 0: its weights get no gradient and stay 0, only its intercepts move. Leaving
    # its weights out of the solve changes no iterate and saves their share of the work.
    varying, constant = varies.nonzero()[:, 0], (~varies).nonzero()[:, 0]
    Zv, inv_v = Z[varying], inv[varying]
    V = start[0][varying].clone().requires_grad_()
    c = start[1].clone().requires_grad_()
    opt = lbfgs([V, c], max_iter, tol)

    def closure():
        opt.zero_grad()
        logits = torch.einsum("mnd,mfdk->mfnk", Zv, V) + c[varying, :, None, :]
        ce = -(torch.log_softmax(logits, -1) * onehot).sum(-1)  # [m, f, n]
        ce_constant = -(torch.log_softmax(c[constant, :, None, :], -1) * onehot).sum(-1)
        data = ((torch.cat([ce, ce_constant]) * w).sum(-1) / rows).sum()
        penalty = ((V * inv_v) ** 2).sum((-2, -1)) / (2 * C * rows)
        total = data + penalty.sum()
        total.backward()
        return total

    opt.step(closure)
    weights = torch.zeros(m, folds, d, n_classes, dtype=Z.dtype, device=Z.device)
    weights[varying] = V.detach()
    return weights, c.detach()


def lbfgs(params: list[torch.Tensor], max_iter: int, tol: float) -> torch.optim.LBFGS:
    """The probes' solver: L-BFGS with a strong-Wolfe line search, stopped by `tol` on the gradient."""
    return torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )


def restricted_argmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Argmax over the last dim among each row's allowed classes (a question's own choices)."""
    return torch.where(allowed, logits, torch.finfo(logits.dtype).min).argmax(-1)


def kfold_masks(n: int, folds: int, seed: int = 0) -> torch.Tensor:
    """[folds, n] training masks of a seeded k-fold split (each row held out exactly once)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(folds, n, dtype=torch.bool)
    for f, part in enumerate(torch.tensor_split(order, folds)):
        held[f, part] = True
    return ~held


@dataclass
class LogisticProbe:
    """Per-layer multinomial logistic probes with C chosen per layer by inner k-fold CV.

    scikit-learn style: `fit(X [layers, n, d], y [n])`, `predict(X, allowed)`, `score(X, y, allowed)`
    (per-layer accuracy). `allowed` [n, K] restricts each row's prediction to its question's choices.
    """

    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0)
    folds: int = 5
    seed: int = 0
    max_iter: int = 500
    tol: float = 1e-5  # on the summed gradient; float32 with this tolerance keeps sklearn's accuracy
    dtype: torch.dtype = torch.float32
    # The inner-CV fits only rank the strengths by held-out accuracy: they stop at scikit-learn's
    # default tolerance, looser than the final probe's `tol`. A fit stopped far from its optimum
    # acts as a more regularised model than its strength, and CV would rank the wrong strength;
    # so the tolerance stops them, and `cv_max_iter` is only a cap.
    cv_max_iter: int = 100
    cv_tol: float = 1e-4
    device: str = "cpu"  # where the solve runs ("cuda" on a GPU); results come back to the CPU

    def fit(self, X, y, allowed=None) -> LogisticProbe:
        X = torch.as_tensor(np.asarray(X)).to(self.device)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long).to(self.device)
        self.n_classes_ = int(y.max()) + 1 if allowed is None else int(np.asarray(allowed).shape[1])
        allowed = self._allowed(allowed, len(y)).to(self.device)
        if len(self.Cs) == 1:
            self.C_ = [self.Cs[0]] * X.shape[0]
        else:
            masks = kfold_masks(len(y), self.folds, self.seed).to(self.device)
            W, b = fit_batched(
                X, y, masks, self.Cs, self.n_classes_, self.cv_max_iter, self.cv_tol, self.dtype
            )
            logits = torch.einsum("lnd,lfcdk->lfcnk", X.to(self.dtype), W) + b[..., None, :]
            correct = (restricted_argmax(logits, allowed) == y).double()  # [l, f, c, n]
            held = (~masks).double()[None, :, None, :]
            self.cv_accuracy_ = ((correct * held).sum(-1) / held.sum(-1)).mean(1)  # [l, c]
            best = self.cv_accuracy_.argmax(-1)  # first C on ties: the strongest regularisation
            self.C_ = [self.Cs[i] for i in best.tolist()]
        every = torch.ones(1, len(y), dtype=torch.bool, device=self.device)
        chosen = [[c] for c in self.C_]  # refit on every row at each layer's chosen strength only
        Wf, bf = fit_batched(X, y, every, chosen, self.n_classes_, self.max_iter, self.tol, self.dtype)
        self.coef_, self.intercept_ = Wf[:, 0, 0], bf[:, 0, 0]
        return self

    def _allowed(self, allowed, n: int) -> torch.Tensor:
        if allowed is None:
            return torch.ones(n, self.n_classes_, dtype=torch.bool)
        return torch.as_tensor(np.asarray(allowed), dtype=torch.bool)

    def predict(self, X, allowed=None) -> np.ndarray:
        X = torch.as_tensor(np.asarray(X)).to(self.device, self.dtype)
        logits = torch.einsum("lnd,ldk->lnk", X, self.coef_) + self.intercept_[:, None, :]
        allowed = self._allowed(allowed, X.shape[1]).to(self.device)
        return restricted_argmax(logits, allowed).cpu().numpy()

    def score(self, X, y, allowed=None) -> np.ndarray:
        return (self.predict(X, allowed) == np.asarray(y)[None, :]).mean(1)


@dataclass
class RidgeProbe:
    """Closed-form ridge regression onto one-hot labels, per layer: a fast screen beside the logistic
    probe (one solve per layer, no iterations; usually a few points less accurate).

    Same interface as `LogisticProbe`; features are centred and the intercept left unpenalised.
    """

    alpha: float = 1.0

    def fit(self, X, y, allowed=None) -> RidgeProbe:
        X = torch.as_tensor(np.asarray(X)).double()
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.n_classes_ = int(y.max()) + 1 if allowed is None else int(np.asarray(allowed).shape[1])
        Y = torch.nn.functional.one_hot(y, self.n_classes_).double()
        mean_x, mean_y = X.mean(1, keepdim=True), Y.mean(0, keepdim=True)
        Xc, Yc = X - mean_x, Y - mean_y
        d = X.shape[-1]
        gram = (Xc.mT @ Xc + self.alpha * torch.eye(d, dtype=X.dtype)).contiguous()  # SPD
        factor = torch.linalg.cholesky(gram)
        self.coef_ = torch.cholesky_solve((Xc.mT @ Yc).contiguous(), factor)  # [layers, d, K]
        self.intercept_ = mean_y - (mean_x @ self.coef_)[:, 0]  # [layers, K]
        return self

    def predict(self, X, allowed=None) -> np.ndarray:
        X = torch.as_tensor(np.asarray(X)).double()
        logits = X @ self.coef_ + self.intercept_[:, None, :]
        if allowed is None:
            allowed = torch.ones(X.shape[1], self.n_classes_, dtype=torch.bool)
        return restricted_argmax(logits, torch.as_tensor(np.asarray(allowed), dtype=torch.bool)).numpy()

    def score(self, X, y, allowed=None) -> np.ndarray:
        return (self.predict(X, allowed) == np.asarray(y)[None, :]).mean(1)
