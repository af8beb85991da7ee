"""Control tasks and confidence intervals for probe accuracies."""

from __future__ import annotations

import math

import numpy as np


def control_answers(answers: np.ndarray, n_choices: np.ndarray, seed: int = 0) -> np.ndarray:
    """A control task (Hewitt & Liang): each fact's answer position is another fact's, shuffled
    across facts, so the label stays one of the fact's own choices but carries no knowledge."""
    return np.random.default_rng(seed).permutation(np.asarray(answers)) % np.asarray(n_choices)


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_with_ci(correct: np.ndarray) -> dict:
    """Mean of a boolean vector with its Wilson interval."""
    correct = np.asarray(correct, dtype=bool)
    low, high = wilson(int(correct.sum()), len(correct))
    return {"acc": float(correct.mean()), "ci": [low, high], "n": int(len(correct))}
