"""HSIC and distance correlation against their textbook formulas written out term by term, and
their permutation tests on planted dependence and independence."""

from __future__ import annotations

import math

import pytest
import torch

from cvd.analysis import distance_correlation, distance_correlation_test, hsic, hsic_test
from cvd.analysis.dependence import rbf_gram


def _hsic_by_terms(k, el):
    # Gretton et al. (2005), eq. 3 with empirical means, as three explicit sums.
    n = k.shape[0]
    first = sum(k[i, j] * el[i, j] for i in range(n) for j in range(n)) / n**2
    second = k.sum() * el.sum() / n**4
    third = sum(k[i, j] * el[i, q] for i in range(n) for j in range(n) for q in range(n)) * 2 / n**3
    return float(first + second - third)


def test_hsic_equals_the_sum_of_its_terms():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    y = x[:, :2] ** 2 + torch.randn(7, 2, generator=generator, dtype=torch.float64)
    expected = _hsic_by_terms(rbf_gram(x), rbf_gram(y))
    assert hsic(x, y) == pytest.approx(expected, rel=1e-9)


def test_median_bandwidth_by_hand():
    # Three points on a line at 0, 1, 3: pairwise distances 1, 2, 3, median 2, so
    # k(0, 1) = exp(-1 / (2 * 4)).
    gram = rbf_gram(torch.tensor([[0.0], [1.0], [3.0]]))
    assert float(gram[0, 1]) == pytest.approx(math.exp(-1 / 8), rel=1e-9)
    assert float(gram[0, 2]) == pytest.approx(math.exp(-9 / 8), rel=1e-9)


def _dcor_by_terms(x, y):
    # Szekely, Rizzo and Bakirov (2007), definition 4, with explicit loops.
    n = len(x)

    def centred(z):
        d = [[float(torch.dist(z[i], z[j])) for j in range(n)] for i in range(n)]
        row = [sum(r) / n for r in d]
        total = sum(row) / n
        return [[d[i][j] - row[i] - row[j] + total for j in range(n)] for i in range(n)]

    a, b = centred(x), centred(y)
    mean = lambda p, q: sum(p[i][j] * q[i][j] for i in range(n) for j in range(n)) / n**2  # noqa: E731
    return mean(a, b) / math.sqrt(mean(a, a) * mean(b, b))


def test_distance_correlation_equals_its_definition():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    y = torch.sin(x[:, :1]) + 0.3 * torch.randn(6, 1, generator=generator, dtype=torch.float64)
    assert distance_correlation(x, y) == pytest.approx(_dcor_by_terms(x, y), rel=1e-9)


def test_distance_correlation_is_one_for_a_similarity_transform():
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert distance_correlation(x, 2.5 * x + 1.0) == pytest.approx(1.0, abs=1e-12)


def test_permutation_tests_find_planted_dependence_and_not_independence():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(200, 16, generator=generator)
    # Non-linear and uncorrelated with x: only a test that sees beyond covariance finds it.
    dependent = torch.cat([x[:, :8] ** 2, torch.randn(200, 8, generator=generator)], dim=1)
    independent = torch.randn(200, 16, generator=generator)
    for test in (hsic_test, distance_correlation_test):
        assert test(x, dependent, permutations=200).p_value <= 0.01
        assert test(x, independent, permutations=200).p_value > 0.05


def test_p_value_counts_the_observed_statistic():
    # With one permutation the smallest possible p-value is (1 + 0) / (1 + 1).
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(4))
    assert hsic_test(x, x, permutations=1).p_value >= 0.5
