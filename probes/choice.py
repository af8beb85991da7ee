"""Choice-scoring probes: per layer, one weight vector scores each of a question's own choices from
that choice's own features (the residual at the last token of "question + choice"), softmax over the
fact's choices (a conditional logit). A probe over answer classes cannot name an answer it never saw
in training (a year, a name: V's answers are mostly not T's); this one scores any choice.

Objective per (layer, fold): scikit-learn's `C · Σ CE + ½‖w‖²` (no intercept: a constant adds the
same to every choice), divided by `C · n` for conditioning. With two choices it is scikit-learn's
binary `LogisticRegression(fit_intercept=False)` on the choices' feature difference.
"""

from __future__ import annotations

import torch

from probes.linear import kfold_masks, lbfgs

NEG = -1e30  # a disallowed choice's logit (finite: no NaN in the softmax's gradient)


def _masked(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return torch.where(allowed, logits, torch.full_like(logits, NEG))


def fit_choice(
    S: torch.Tensor,
    y: torch.Tensor,
    train_mask: torch.Tensor,
    allowed: torch.Tensor,
    C: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """W [layers, folds, d]: one choice-scoring probe per layer and fold.

    S: [layers, n, K, d] each fact's choices' features (pads anywhere `allowed` is False);
    y: [n] the right choice's position, or [folds, n] (a control task beside the real one);
    train_mask: [folds, n] the facts each fold trains on; allowed: [n, K] the fact's choices.
    Solved in unit-variance coordinates (the penalty is written on W, so the optimum is the same;
    centring is free: it adds the same amount to each of a fact's choices)."""
    S = S.to(dtype)
    allowed = torch.as_tensor(allowed, dtype=torch.bool)
    n_layers, n, K, d = S.shape
    folds = train_mask.shape[0]
    valid = S[:, allowed]  # [layers, valid pairs, d]
    std = valid.std(1)  # [layers, d]
    scale = torch.where(std > 1e-6 * std.amax(-1, keepdim=True).clamp(min=1e-30), std, 1.0)
    Z = (S - valid.mean(1)[:, None, None]) / scale[:, None, None]
    inv = (1 / scale)[:, None, :]  # [layers, 1, d]
    y = torch.as_tensor(y, dtype=torch.long)
    y = y[None].expand(folds, n) if y.ndim == 1 else y
    onehot = torch.nn.functional.one_hot(y, K).to(dtype)  # [folds, n, K]
    w = train_mask.to(dtype)
    rows = w.sum(1)  # [folds]
    V = torch.zeros(n_layers, folds, d, dtype=dtype, requires_grad=True)
    opt = lbfgs([V], max_iter, tol)

    def closure():
        opt.zero_grad()
        logits = _masked(torch.einsum("lnkd,lfd->lfnk", Z, V), allowed)
        ce = -(torch.log_softmax(logits, -1) * onehot).sum(-1)  # [layers, folds, n]
        data = ((ce * w).sum(-1) / rows).sum()
        penalty = ((V * inv) ** 2).sum(-1) / (2 * C * rows)
        total = data + penalty.sum()
        total.backward()
        return total

    opt.step(closure)
    return V.detach() * inv


def choice_scores(W: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """[layers, n, K] each choice's score under probes W [layers, d] (one fold's)."""
    return torch.einsum("lnkd,ld->lnk", S.to(W.dtype), W)


def predict_choice(W: torch.Tensor, S: torch.Tensor, allowed) -> torch.Tensor:
    """[layers, n] the choice each layer's probe picks among the fact's own."""
    allowed = torch.as_tensor(allowed, dtype=torch.bool)
    return _masked(choice_scores(W, S), allowed).argmax(-1)


def ridge_choice(S: torch.Tensor, y: torch.Tensor, allowed, alpha: float = 1.0) -> torch.Tensor:
    """W [layers, d]: closed-form ridge regression of "is this the right choice" on features centred
    within each fact (so only differences between a fact's choices count), a fast screen beside the
    logistic probe. S [layers, n, K, d] of the training facts, y [n] their right choices."""
    S = S.double()
    allowed = torch.as_tensor(allowed, dtype=torch.bool)
    m = allowed.double()
    t = torch.nn.functional.one_hot(torch.as_tensor(y, dtype=torch.long), S.shape[2]).double()
    count = m.sum(1, keepdim=True)  # [n, 1]
    Xc = (S - (S * m[..., None]).sum(2, keepdim=True) / count[..., None]) * m[..., None]
    tc = (t - 1 / count) * m  # [n, K]
    flat = Xc.flatten(1, 2)  # [layers, n K, d]
    gram = flat.mT @ flat + alpha * torch.eye(S.shape[-1], dtype=S.dtype)
    return torch.linalg.solve(gram, flat.mT @ tc.flatten()[None, :, None])[..., 0]


def fit_choice_cv(
    S: torch.Tensor,
    y: torch.Tensor,
    allowed,
    Cs,
    folds: int = 3,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, list[float]]:
    """(W [layers, d], the strength chosen per layer): each layer's C by inner k-fold accuracy
    (the first, strongest regularisation, on ties), then refitted on every fact at that C."""
    allowed = torch.as_tensor(allowed, dtype=torch.bool)
    y = torch.as_tensor(y, dtype=torch.long)
    Cs = sorted(Cs)
    if len(Cs) == 1:
        chosen = [Cs[0]] * S.shape[0]
    else:
        masks = kfold_masks(len(y), folds, seed)
        held = (~masks).double()
        acc = torch.zeros(S.shape[0], len(Cs))
        for i, C in enumerate(Cs):
            W = fit_choice(S, y, masks, allowed, C, max_iter, tol)  # [layers, folds, d]
            picks = _masked(torch.einsum("lnkd,lfd->lfnk", S.to(W.dtype), W), allowed).argmax(-1)
            acc[:, i] = (((picks == y).double() * held).sum(-1) / held.sum(-1)).mean(1)
        chosen = [Cs[i] for i in acc.argmax(-1).tolist()]
    every = torch.ones(1, len(y), dtype=torch.bool)
    W = torch.zeros(S.shape[0], S.shape[-1])
    for C in sorted(set(chosen)):
        layers = [n for n, c in enumerate(chosen) if c == C]
        W[layers] = fit_choice(S[layers], y, every, allowed, C, max_iter, tol)[:, 0]
    return W, chosen
