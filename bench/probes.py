"""Batched probes vs a loop of scikit-learn fits (docs/design.md §7). Run: `python -m bench.probes [--tiny]`.

Prints one JSON line: both wall times, the speed-up, and per layer the held-out accuracy of each at
its CV-chosen strength. Synthetic features (500 rows, d 768, 4 classes) whose separability grows
with the layer, like a residual stream's. `--tiny`: 3 layers of 120 rows, d 16, 3 folds (the smoke
test's size).
"""

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes.linear import LogisticProbe, RidgeProbe, kfold_masks

CS = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class Size:
    """The problem: layers, training and test rows, feature width, classes, inner-CV folds."""

    layers: int = 13
    rows: int = 500
    test: int = 500
    d: int = 768
    classes: int = 4
    folds: int = 5


TINY = Size(layers=3, rows=120, test=120, d=16, folds=3)


def data(size: Size, seed: int = 0):
    """(X, y, X_test, y_test): class means whose separation grows with the layer, in noise."""
    rng = np.random.default_rng(seed)
    n = size.rows + size.test
    y = rng.integers(0, size.classes, n)
    centers = rng.normal(size=(size.classes, size.d)) / np.sqrt(size.d) * 4
    X = np.stack(
        [rng.normal(size=(n, size.d)) + (layer / size.layers) * centers[y] for layer in range(size.layers)]
    )
    return X[:, : size.rows], y[: size.rows], X[:, size.rows :], y[size.rows :]


def sklearn_loop(X, y, Xt, yt, folds: int) -> tuple[list[float], list[float]]:
    """Per layer: the test accuracy of scikit-learn's fit at the strength its k-fold CV chose, and C."""
    masks = kfold_masks(len(y), folds).numpy()
    accs, chosen = [], []
    for layer in range(len(X)):
        cv = []
        for C in CS:
            scores = []
            for f in range(folds):
                m = LogisticRegression(C=C, max_iter=1000).fit(X[layer][masks[f]], y[masks[f]])
                scores.append(m.score(X[layer][~masks[f]], y[~masks[f]]))
            cv.append(np.mean(scores))
        C = CS[int(np.argmax(cv))]
        chosen.append(C)
        accs.append(LogisticRegression(C=C, max_iter=1000).fit(X[layer], y).score(Xt[layer], yt))
    return accs, chosen


def main():
    p = argparse.ArgumentParser(description="batched probes vs scikit-learn")
    p.add_argument("--device", default="cpu", help="where the batched probes run (cpu or cuda)")
    p.add_argument("--tiny", action="store_true", help="the smoke test's size")
    a = p.parse_args()
    size, device = TINY if a.tiny else Size(), a.device
    X, y, Xt, yt = data(size)
    start = time.perf_counter()
    ref, ref_C = sklearn_loop(X, y, Xt, yt, size.folds)
    t_sk = time.perf_counter() - start
    start = time.perf_counter()
    probe = LogisticProbe(Cs=CS, folds=size.folds, device=device).fit(X, y)
    ours = probe.score(Xt, yt)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ridge = RidgeProbe(alpha=1.0).fit(X, y).score(Xt, yt)
    t_ridge = time.perf_counter() - start
    print(
        json.dumps(
            {
                "bench": "probes",
                "layers": size.layers,
                "folds": size.folds,
                "Cs": list(CS),
                "rows": size.rows,
                "d": size.d,
                "classes": size.classes,
                "threads": torch.get_num_threads(),
                "device": device,
                "sklearn_s": round(t_sk, 2),
                "batched_s": round(t_ours, 2),
                "speedup": round(t_sk / t_ours, 2),
                "acc_sklearn": [round(a, 3) for a in ref],
                "acc_batched": [round(float(a), 3) for a in ours],
                "C_sklearn": ref_C,
                "C_batched": probe.C_,
                "max_abs_diff": round(float(np.max(np.abs(np.array(ref) - ours))), 3),
                "ridge_s": round(t_ridge, 3),
                "ridge_speedup": round(t_sk / t_ridge, 1),
                "acc_ridge": [round(float(a), 3) for a in ridge],
            }
        )
    )


if __name__ == "__main__":
    main()
