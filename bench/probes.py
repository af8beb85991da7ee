"""Batched probes vs a loop of scikit-learn fits (DESIGN §7). Run: `python -m bench.probes`.

Prints one JSON line: both wall times, the speed-up, and per layer the held-out accuracy of each at
its CV-chosen strength. Synthetic features (500 rows, d 768, 4 classes) whose separability grows
with the layer, like a residual stream's.
"""

import json
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from probes.linear import LogisticProbe, RidgeProbe, kfold_masks

LAYERS, ROWS, TEST, D, K, FOLDS = 13, 500, 500, 768, 4, 5
CS = (0.001, 0.01, 0.1, 1.0)


def data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, ROWS + TEST)
    centers = rng.normal(size=(K, D)) / np.sqrt(D) * 4
    X = np.stack(
        [rng.normal(size=(ROWS + TEST, D)) + (layer / LAYERS) * centers[y] for layer in range(LAYERS)]
    )
    return X[:, :ROWS], y[:ROWS], X[:, ROWS:], y[ROWS:]


def sklearn_loop(X, y, Xt, yt):
    masks = kfold_masks(ROWS, FOLDS).numpy()
    accs, chosen = [], []
    for layer in range(LAYERS):
        cv = []
        for C in CS:
            scores = []
            for f in range(FOLDS):
                m = LogisticRegression(C=C, max_iter=1000).fit(X[layer][masks[f]], y[masks[f]])
                scores.append(m.score(X[layer][~masks[f]], y[~masks[f]]))
            cv.append(np.mean(scores))
        C = CS[int(np.argmax(cv))]
        chosen.append(C)
        accs.append(LogisticRegression(C=C, max_iter=1000).fit(X[layer], y).score(Xt[layer], yt))
    return accs, chosen


def main():
    import argparse

    p = argparse.ArgumentParser(description="batched probes vs scikit-learn")
    p.add_argument("--device", default="cpu", help="where the batched probes run (cpu or cuda)")
    device = p.parse_args().device
    X, y, Xt, yt = data()
    start = time.perf_counter()
    ref, ref_C = sklearn_loop(X, y, Xt, yt)
    t_sk = time.perf_counter() - start
    start = time.perf_counter()
    probe = LogisticProbe(Cs=CS, folds=FOLDS, device=device).fit(X, y)
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
                "layers": LAYERS,
                "folds": FOLDS,
                "Cs": list(CS),
                "rows": ROWS,
                "d": D,
                "classes": K,
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
