"""sliced_wasserstein against POT, a closed form for translations, and its gradients."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from cvd.losses import sliced_wasserstein


def _pot_projections(dim: int, n_projections: int, seed: int) -> np.ndarray:
    return ot.sliced.get_random_projections(dim, n_projections, seed=seed)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_matches_pot_with_the_same_projections(p):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    y = rng.normal(loc=0.3, scale=1.5, size=(40, 6))
    projections = _pot_projections(6, 50, seed=3)
    expected = ot.sliced_wasserstein_distance(x, y, projections=projections, p=p)
    got = sliced_wasserstein(
        torch.from_numpy(x), torch.from_numpy(y), p=p, projections=torch.from_numpy(projections)
    )
    assert abs(got.item() - expected) < 1e-5


def test_matches_pot_in_float32():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = rng.normal(size=(64, 12)).astype(np.float32) ** 2
    projections = _pot_projections(12, 128, seed=0)
    expected = ot.sliced_wasserstein_distance(
        x.astype(np.float64), y.astype(np.float64), projections=projections
    )
    got = sliced_wasserstein(
        torch.from_numpy(x), torch.from_numpy(y), projections=torch.from_numpy(projections)
    )
    assert abs(got.item() - expected) < 1e-5


def test_identical_sets_are_at_zero_with_a_finite_gradient():
    x = torch.randn(32, 5, requires_grad=True)
    distance = sliced_wasserstein(x, x.detach().clone(), n_projections=64)
    assert distance.item() < 1e-6
    distance.backward()
    assert torch.isfinite(x.grad).all()


def test_a_translation_gives_the_closed_form_and_grows_with_the_shift():
    # For y = x + t every projection is shifted by <theta, t>: SW2^2 = mean_theta <theta, t>^2.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 4, dtype=torch.float64, generator=generator)
    direction = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    thetas = torch.randn(4, 200, dtype=torch.float64, generator=generator)
    thetas = thetas / thetas.norm(dim=0, keepdim=True)
    distances = []
    for scale in (0.25, 0.5, 1.0, 2.0):
        shift = scale * direction
        got = sliced_wasserstein(x, x + shift, projections=thetas).item()
        closed_form = float(((shift @ thetas) ** 2).mean().sqrt())
        assert got == pytest.approx(closed_form, rel=1e-9)
        distances.append(got)
    assert distances == sorted(distances) and distances[0] > 0


def test_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(7, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    y = torch.randn(7, 3, dtype=torch.float64, generator=generator) + 1.0
    thetas = torch.randn(3, 5, dtype=torch.float64, generator=generator)
    thetas = thetas / thetas.norm(dim=0, keepdim=True)
    assert torch.autograd.gradcheck(lambda a: sliced_wasserstein(a, y, projections=thetas), (x,))


def test_generator_makes_random_projections_reproducible():
    x, y = torch.randn(20, 8), torch.randn(20, 8)
    first = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(7))
    second = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(7))
    assert first.item() == second.item()


def test_rejects_sets_of_different_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        sliced_wasserstein(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(torch.randn(5, 3), torch.randn(5, 3), projections=torch.randn(4, 10))
