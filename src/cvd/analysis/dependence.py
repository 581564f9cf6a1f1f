"""Dependence between two sets of vectors, measured independently of CVD's training loss.

``cvd analyze`` judges the independence constraint with estimators it does not optimise: the
Hilbert-Schmidt independence criterion with Gaussian kernels (Gretton et al. 2005) and distance
correlation (Szekely et al. 2007), each with a permutation p-value. Both are zero in the
population exactly when the two variables are independent (for characteristic kernels / finite
first moments) and see non-linear dependence, which the training loss (second moments only)
does not.

Written here rather than taken from a library: neither SciPy nor PyTorch ships them, and the
packages that do (``hyppo``, ``dcor``) would pull in numba for two formulas of a few lines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class DependenceResult:
    """A statistic, its permutation p-value and how many permutations produced it."""

    statistic: float
    p_value: float
    permutations: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).double()
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"expected (n, d) samples, got shape {tuple(x.shape)}")
    return x


def _double_centre(matrix: torch.Tensor) -> torch.Tensor:
    """H M H with H = I - 11^T / n."""
    return matrix - matrix.mean(0, keepdim=True) - matrix.mean(1, keepdim=True) + matrix.mean()


def rbf_gram(x: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """exp(-|x_i - x_j|^2 / (2 sigma^2)), sigma = the median pairwise distance unless given."""
    x = _as_matrix(x)
    squared = torch.cdist(x, x).pow(2)
    if bandwidth is None:
        off_diagonal = squared[~torch.eye(len(x), dtype=torch.bool)]
        positive = off_diagonal[off_diagonal > 0]
        bandwidth = float(positive.median().sqrt()) if len(positive) else 1.0
    return torch.exp(-squared / (2.0 * bandwidth**2))


def hsic_from_grams(k: torch.Tensor, el: torch.Tensor) -> float:
    """Biased HSIC, tr(K H L H) / n^2 (Gretton et al. 2005, eq. 4)."""
    n = k.shape[0]
    return float((_double_centre(k) * el).sum() / n**2)


def hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    """Biased HSIC with Gaussian kernels of median bandwidth."""
    return hsic_from_grams(rbf_gram(x), rbf_gram(y))


def normalised_hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    """HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)) in [0, 1]: comparable across feature scales and sizes."""
    k, el = rbf_gram(x), rbf_gram(y)
    denominator = (hsic_from_grams(k, k) * hsic_from_grams(el, el)) ** 0.5
    return hsic_from_grams(k, el) / denominator if denominator > 0 else 0.0


def _centred_distances(x: torch.Tensor) -> torch.Tensor:
    x = _as_matrix(x)
    return _double_centre(torch.cdist(x, x))


def distance_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Squared sample distance correlation dCor^2_n (Szekely, Rizzo and Bakirov 2007), in [0, 1]."""
    a, b = _centred_distances(x), _centred_distances(y)
    dcov = (a * b).mean()
    denominator = ((a * a).mean() * (b * b).mean()).sqrt()
    return float(dcov / denominator) if denominator > 0 else 0.0


def _permutation_p_value(
    a: torch.Tensor, b: torch.Tensor, observed: float, permutations: int, generator: torch.Generator
) -> float:
    """P(statistic >= observed) under independence: the statistic is <a, P b P^T> up to a constant
    factor for both HSIC and dCov, with a centred; (1 + count) / (1 + permutations)."""
    n = a.shape[0]
    count = 0
    scale = observed / float((a * b).sum()) if float((a * b).sum()) != 0 else 0.0
    for _ in range(permutations):
        order = torch.randperm(n, generator=generator)
        value = float((a * b[order][:, order]).sum()) * scale
        count += value >= observed - 1e-12 * abs(observed)
    return (1 + count) / (1 + permutations)


def hsic_test(x: torch.Tensor, y: torch.Tensor, permutations: int = 200, seed: int = 0) -> DependenceResult:
    """Normalised HSIC and its permutation p-value (rows of y shuffled against rows of x)."""
    k, el = rbf_gram(x), rbf_gram(y)
    centred = _double_centre(k)
    observed = normalised_hsic(x, y)
    generator = torch.Generator().manual_seed(seed)
    p_value = _permutation_p_value(centred, el, observed, permutations, generator)
    return DependenceResult(observed, p_value, permutations)


def distance_correlation_test(
    x: torch.Tensor, y: torch.Tensor, permutations: int = 200, seed: int = 0
) -> DependenceResult:
    """Squared distance correlation and its permutation p-value."""
    a, b = _centred_distances(x), _centred_distances(y)
    observed = distance_correlation(x, y)
    generator = torch.Generator().manual_seed(seed)
    p_value = _permutation_p_value(a, b, observed, permutations, generator)
    return DependenceResult(observed, p_value, permutations)
