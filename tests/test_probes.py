"""Batched logistic probes against scikit-learn on the same rows."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes.linear import LogisticProbe, fit_batched, kfold_masks


def blobs(layers=3, n=240, d=12, k=4, seed=0):
    """Class-dependent means whose separation grows with the layer, as a residual stream's might."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, d))
    X = np.stack([rng.normal(size=(n, d)) + 0.6 * (layer + 0.2) * centers[y] for layer in range(layers)])
    return X, y


def test_one_solve_equals_sklearn_per_problem():
    X, y = blobs()
    Cs = (0.05, 1.0)
    W, b = fit_batched(torch.tensor(X), torch.tensor(y), torch.ones(1, len(y), dtype=torch.bool), Cs, 4)
    for layer in range(X.shape[0]):
        for c, C in enumerate(Cs):
            ref = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(X[layer], y)
            np.testing.assert_allclose(W[layer, 0, c].T.numpy(), ref.coef_, atol=2e-4, rtol=1e-3)
            np.testing.assert_allclose(b[layer, 0, c].numpy(), ref.intercept_, atol=2e-4, rtol=1e-3)


def test_folds_are_independent_problems():
    X, y = blobs(layers=1)
    masks = kfold_masks(len(y), 3, seed=1)
    assert (masks.sum(0) == 2).all()  # every row is held out exactly once
    W, _ = fit_batched(torch.tensor(X), torch.tensor(y), masks, (1.0,), 4)
    for f in range(3):
        rows = masks[f].numpy()
        ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(X[0][rows], y[rows])
        np.testing.assert_allclose(W[0, f, 0].T.numpy(), ref.coef_, atol=2e-4, rtol=1e-3)


def test_probe_accuracy_matches_sklearn_with_cv():
    X, y = blobs(n=400, seed=3)
    Xt, yt = X[:, 300:], y[300:]
    X, y = X[:, :300], y[:300]
    probe = LogisticProbe(Cs=(0.01, 0.1, 1.0, 10.0), folds=5).fit(X, y)
    ours = probe.score(Xt, yt)
    for layer in range(X.shape[0]):
        ref = LogisticRegression(C=probe.C_[layer], max_iter=5000, tol=1e-10).fit(X[layer], y)
        assert abs(ours[layer] - ref.score(Xt[layer], yt)) <= 0.01
    assert ours[-1] > ours[0]  # separation grows with the layer


def test_prediction_is_restricted_to_allowed_choices():
    X, y = blobs(layers=1, n=200)
    probe = LogisticProbe(Cs=(1.0,), folds=2).fit(X, y)
    allowed = np.zeros((200, 4), dtype=bool)
    allowed[:, [1, 3]] = True
    assert set(np.unique(probe.predict(X, allowed))) <= {1, 3}


def test_ridge_probe_equals_sklearn_ridge():
    from sklearn.linear_model import Ridge

    from probes.linear import RidgeProbe

    X, y = blobs(layers=2, n=150, seed=4)
    probe = RidgeProbe(alpha=3.0).fit(X, y)
    onehot = np.eye(4)[y]
    for layer in range(2):
        ref = Ridge(alpha=3.0).fit(X[layer], onehot)
        np.testing.assert_allclose(probe.coef_[layer].T.numpy(), ref.coef_, atol=1e-8)
        np.testing.assert_allclose(probe.intercept_[layer].numpy(), ref.intercept_, atol=1e-8)
        assert probe.score(X, y)[layer] == (ref.predict(X[layer]).argmax(1) == y).mean()


def test_early_stopped_inner_cv_picks_a_strength_as_good_as_full_cv():
    X, y = blobs(n=300, seed=5)
    Cs = (0.001, 0.01, 0.1, 1.0)
    probe = LogisticProbe(Cs=Cs, folds=5).fit(X, y)
    masks = kfold_masks(len(y), 5, seed=0).numpy()
    for layer in range(X.shape[0]):
        cv = []
        for C in Cs:
            fits = [LogisticRegression(C=C, max_iter=5000).fit(X[layer][m], y[m]) for m in masks]
            cv.append(np.mean([f.score(X[layer][~m], y[~m]) for f, m in zip(fits, masks, strict=True)]))
        # the early-stopped CV may break a near-tie differently, never by more than a point
        assert cv[Cs.index(probe.C_[layer])] >= max(cv) - 0.01


def test_a_constant_layer_gets_zero_weights_and_the_others_are_unchanged():
    """A layer whose features are the same on every row (the embedding of a prompt's fixed last
    token) is left out of the solve: zero weights, intercepts fitted, the other layers as if it
    were not there."""
    X, y = blobs(layers=2)
    with_constant = np.concatenate([np.broadcast_to(X[0, :1], X[0].shape)[None], X])
    W, b = fit_batched(
        torch.tensor(with_constant), torch.tensor(y), torch.ones(1, len(y), dtype=torch.bool), (1.0,), 4
    )
    assert not W[0].any() and b[0].abs().sum() > 0
    alone, alone_b = fit_batched(
        torch.tensor(X), torch.tensor(y), torch.ones(1, len(y), dtype=torch.bool), (1.0,), 4
    )
    torch.testing.assert_close(W[1:], alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b[1:], alone_b, atol=1e-5, rtol=1e-4)
    counts = np.bincount(y, minlength=4)
    assert b[0, 0, 0].argmax().item() == counts.argmax()  # the most frequent class
