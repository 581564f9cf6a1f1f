"""Linear probes on constructed data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from cvd.analysis import ridge_probe


def test_regression_r2_matches_the_signal_share():
    # y = x w + noise with var(x w) = 3 and var(noise) = 1: the best linear R^2 is 0.75.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 10))
    w = np.zeros(10)
    w[:3] = 1.0
    y = x @ w + rng.standard_normal(2000)
    groups = np.repeat(np.arange(200), 10)
    assert ridge_probe(x, y, groups)["score"] == pytest.approx(0.75, abs=0.03)


def test_classification_separable_and_random():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 20))
    labels = (x[:, 0] > 0).astype(int)
    groups = np.arange(400) // 4
    assert (
        ridge_probe(x + 3 * labels[:, None] * np.eye(20)[0], labels, groups, kind="classification")["score"]
        > 0.97
    )
    random_labels = rng.integers(0, 2, 400)
    assert abs(ridge_probe(x, random_labels, groups, kind="classification")["score"] - 0.5) < 0.1


def test_groups_are_never_split_across_folds():
    # Each group has its own random target and its own identifying feature: a probe that saw a
    # group in training would predict it perfectly; held out by group, it cannot.
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(50), 6)
    identity = np.eye(50)[groups]
    target = rng.standard_normal(50)[groups]
    assert ridge_probe(identity, target, groups)["score"] < 0.1


def test_imbalanced_classes_score_balanced_accuracy():
    # 90% of one class and a useless feature: plain accuracy would be 0.9, balanced accuracy 0.5.
    rng = np.random.default_rng(3)
    labels = np.array([0] * 360 + [1] * 40)
    x = rng.standard_normal((400, 5))
    score = ridge_probe(x, labels, np.arange(400) // 5, kind="classification")["score"]
    assert score < 0.62
