"""Choice-scoring probes against scikit-learn and closed forms on the same rows."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from probes.choice import fit_choice, fit_choice_cv, predict_choice, ridge_choice


def statements(layers=2, n=200, k=4, d=10, signal=1.0, seed=0):
    """Each fact's choices: unrelated features, the right one shifted along one direction whose size
    grows with the layer (the choices are new every fact: nothing to learn about an answer's identity)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    u = rng.normal(size=d)
    S = rng.normal(size=(layers, n, k, d))
    for layer in range(layers):
        S[layer, np.arange(n), y] += signal * layer * u / np.linalg.norm(u)
    return torch.tensor(S), torch.tensor(y)


def test_two_choices_equal_sklearn_logistic_regression_on_the_difference():
    S, y = statements(k=2, signal=2.0)
    allowed = torch.ones(len(y), 2, dtype=torch.bool)
    for C in (0.1, 1.0):
        W = fit_choice(S, y, torch.ones(1, len(y), dtype=torch.bool), allowed, C, 500, 1e-9, torch.float64)
        for layer in range(S.shape[0]):
            diff = (S[layer, :, 1] - S[layer, :, 0]).numpy()
            ref = LogisticRegression(C=C, fit_intercept=False, max_iter=5000, tol=1e-12).fit(diff, y.numpy())
            np.testing.assert_allclose(W[layer, 0].numpy(), ref.coef_[0], atol=1e-5, rtol=1e-4)


def test_folds_and_label_sets_are_independent_problems():
    S, y = statements(layers=1, k=3, signal=2.0)
    allowed = torch.ones(len(y), 3, dtype=torch.bool)
    control = torch.tensor(np.random.default_rng(1).permutation(y.numpy()))
    masks = torch.zeros(2, len(y), dtype=torch.bool)
    masks[0, :120], masks[1, 80:] = True, True
    both = fit_choice(S, torch.stack([y, control]), masks, allowed, 1.0, 500, 1e-9, torch.float64)
    for f, labels in enumerate((y, control)):
        alone = fit_choice(
            S[:, masks[f]],
            labels[masks[f]],
            masks[f : f + 1, masks[f]],
            allowed[masks[f]],
            1.0,
            500,
            1e-9,
            torch.float64,
        )
        torch.testing.assert_close(both[:, f], alone[:, 0], atol=1e-6, rtol=1e-5)


def test_padded_choices_are_never_picked_and_change_nothing():
    S, y = statements(layers=1, k=4, signal=3.0)
    allowed = torch.ones(len(y), 4, dtype=torch.bool)
    allowed[::2, 3] = False  # every other fact has three choices
    y = torch.where(allowed[torch.arange(len(y)), y], y, 0)
    every = torch.ones(1, len(y), dtype=torch.bool)
    W = fit_choice(S, y, every, allowed, 1.0, 500, 1e-9, torch.float64)
    noisy = S.clone()
    noisy[:, ~allowed] = 1e3  # what a pad holds must not matter
    W2 = fit_choice(noisy, y, every, allowed, 1.0, 500, 1e-9, torch.float64)
    picks = predict_choice(W2[:, 0], noisy, allowed)
    assert not (picks[0, ::2] == 3).any()
    # the standardisation reads the real choices only: the same optimum
    torch.testing.assert_close(W[:, 0], W2[:, 0], atol=1e-5, rtol=1e-4)


def test_the_probe_picks_answers_it_never_saw():
    """Trained on some facts, tested on others whose choices are all new: it reads the shared
    direction, not an answer's identity (which a probe over answer classes would need)."""
    S, y = statements(layers=3, n=300, signal=4.0, seed=2)
    allowed = torch.ones(len(y), 4, dtype=torch.bool)
    train = torch.zeros(1, len(y), dtype=torch.bool)
    train[0, :200] = True
    W = fit_choice(S, y, train, allowed)[:, 0]
    acc = (predict_choice(W, S[:, 200:], allowed[200:]) == y[200:]).double().mean(1)
    assert acc[0] < 0.45 and acc[-1] > 0.9  # layer 0 holds no signal; the last a strong one


def test_cv_picks_one_of_the_strengths_and_refits():
    S, y = statements(layers=2, signal=2.0)
    allowed = torch.ones(len(y), 4, dtype=torch.bool)
    W, chosen = fit_choice_cv(S, y, allowed, (0.01, 1.0), folds=3)
    assert W.shape == (2, S.shape[-1]) and set(chosen) <= {0.01, 1.0}
    for layer, C in enumerate(chosen):
        alone = fit_choice(S[layer : layer + 1], y, torch.ones(1, len(y), dtype=torch.bool), allowed, C)
        torch.testing.assert_close(W[layer], alone[0, 0].float(), atol=1e-4, rtol=1e-3)


def test_ridge_screen_equals_sklearn_ridge_on_fact_centred_rows():
    S, y = statements(layers=2, k=3, signal=2.0)
    allowed = torch.ones(len(y), 3, dtype=torch.bool)
    W = ridge_choice(S, y, allowed, alpha=2.0)
    t = np.eye(3)[y.numpy()] - 1 / 3
    for layer in range(2):
        X = (S[layer] - S[layer].mean(1, keepdim=True)).reshape(-1, S.shape[-1]).numpy()
        ref = Ridge(alpha=2.0, fit_intercept=False).fit(X, t.reshape(-1))
        np.testing.assert_allclose(W[layer].numpy(), ref.coef_, atol=1e-8, rtol=1e-6)
