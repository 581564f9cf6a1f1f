"""Linear probes: how much of a known factor (the view, the drone's altitude) a representation holds.

A ridge regression from the (standardised) features, scored out of sample with folds that keep
every location's images together, so a probe cannot score by recognising the place. The ridge
penalty of each fold is chosen inside its training part by exact leave-one-out (closed form from
one SVD), never on the fold it is scored on. Classification regresses on +-1 and scores balanced
accuracy (the views are unbalanced: eight drone images per satellite image in our worlds).

NumPy/PyTorch rather than scikit-learn: the toolkit does not otherwise depend on it, and these
are a dozen lines of linear algebra.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LAMBDAS = tuple(10.0**k for k in range(-3, 6))


def _ridge_fit(x: np.ndarray, y: np.ndarray, lambdas: Sequence[float]) -> tuple[np.ndarray, float]:
    """Coefficients (p,) for centred x, y with the penalty of lowest leave-one-out error."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ y
    best = (np.inf, None, None)
    for lam in lambdas:
        shrink = s**2 / (s**2 + lam)
        fitted = u @ (shrink * uty)
        leverage = (u**2 * shrink).sum(1)
        # + 1/n: the intercept (centring) is a fitted parameter too
        loo = (y - fitted) / np.clip(1.0 - leverage - 1.0 / len(y), 1e-6, None)
        error = float(np.mean(loo**2))
        if error < best[0]:
            best = (error, lam, vt.T @ (s / (s**2 + lam) * uty))
    return best[2], best[1]


def _group_folds(groups: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    assignment = {unique[i]: rank % folds for rank, i in enumerate(order)}
    fold_of = np.array([assignment[g] for g in groups])
    return [np.flatnonzero(fold_of == k) for k in range(folds)]


def ridge_probe(
    features: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    kind: str = "regression",
    folds: int = 5,
    seed: int = 0,
    lambdas: Sequence[float] = LAMBDAS,
) -> dict[str, float]:
    """Out-of-sample score of a linear probe: R^2 (``regression``) or balanced accuracy (``classification``).

    ``groups`` (one id per sample, e.g. the location) are never split across folds. Returns the
    score pooled over all held-out predictions, the number of samples and folds used.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    groups = np.asarray(groups)
    if kind not in ("regression", "classification"):
        raise ValueError(f"kind must be 'regression' or 'classification', got {kind!r}")
    if kind == "classification":
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"classification probes take two classes, got {len(classes)}")
        y = np.where(y == classes[1], 1.0, -1.0)
    folds = min(folds, len(np.unique(groups)))
    if folds < 2:
        raise ValueError("a probe needs samples from at least two groups")
    predictions = np.zeros_like(y)
    for test in _group_folds(groups, folds, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        mean, scale = x[train].mean(0), x[train].std(0) + 1e-8
        x_train, x_test = (x[train] - mean) / scale, (x[test] - mean) / scale
        y_mean = y[train].mean()
        coefficients, _ = _ridge_fit(x_train, y[train] - y_mean, lambdas)
        predictions[test] = x_test @ coefficients + y_mean
    if kind == "regression":
        residual = np.sum((y - predictions) ** 2)
        total = np.sum((y - y.mean()) ** 2)
        score = 1.0 - residual / total if total > 0 else 0.0
    else:
        labels = np.where(predictions >= 0, 1.0, -1.0)
        score = float(np.mean([np.mean(labels[y == c] == c) for c in (-1.0, 1.0)]))
    return {"score": float(score), "samples": len(y), "folds": folds}
