"""independence_loss: eq. 3 against POT, and its behaviour on independent vs dependent factors."""

from __future__ import annotations

import numpy as np
import ot
import torch

from cvd.losses import independence_loss


def _unit_rows(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_equals_pot_on_the_pooled_normalised_rows():
    generator = torch.Generator().manual_seed(0)
    zc = torch.randn(16, 6, 3, 2, generator=generator, dtype=torch.float64)
    zv = torch.randn(16, 4, 3, 2, generator=generator, dtype=torch.float64)
    permutation = torch.randperm(16, generator=generator)
    # Reference, written out: pool over the map, L2 per part, rows joint vs permuted.
    content = _unit_rows(zc.numpy().mean(axis=(2, 3)))
    viewpoint = _unit_rows(zv.numpy().mean(axis=(2, 3)))
    joint = np.concatenate([content, viewpoint], axis=1)
    product = np.concatenate([content, viewpoint[permutation.numpy()]], axis=1)
    # Same directions as the loss draws from a generator in that state (unit Gaussian columns).
    thetas = torch.randn(10, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    thetas = (thetas / thetas.norm(dim=0, keepdim=True)).double().numpy()
    expected = ot.sliced_wasserstein_distance(joint, product, projections=thetas, p=2)
    got = independence_loss(
        zc, zv, n_projections=32, permutation=permutation, generator=torch.Generator().manual_seed(5)
    )
    assert abs(got.item() - expected) < 1e-5


def test_small_for_independent_factors_and_large_when_viewpoint_follows_content():
    # Low dimension so that a batch of 512 resolves the joint law well with random slices.
    generator = torch.Generator().manual_seed(1)
    zc = torch.randn(512, 2, generator=generator)
    independent = torch.randn(512, 2, generator=generator)
    dependent = zc @ torch.randn(2, 2, generator=generator)  # zv = f(zc)
    independent_loss = independence_loss(zc, independent, generator=generator).item()
    dependent_loss = independence_loss(zc, dependent, generator=generator).item()
    assert independent_loss < 0.08  # finite-sample noise floor of a random re-pairing
    assert dependent_loss > 0.15
    assert dependent_loss > 4 * independent_loss


def test_maps_are_pooled_and_each_part_normalised():
    generator = torch.Generator().manual_seed(2)
    zc = torch.randn(32, 5, 4, 4, generator=generator)
    zv = torch.randn(32, 3, 4, 4, generator=generator)
    permutation = torch.randperm(32, generator=generator)

    def loss(content, viewpoint):
        return independence_loss(
            content, viewpoint, permutation=permutation, generator=torch.Generator().manual_seed(9)
        ).item()

    on_maps = loss(zc, zv)
    assert abs(on_maps - loss(zc.mean(dim=(2, 3)), zv.mean(dim=(2, 3)))) < 1e-6
    # Shrinking a factor cannot lower the loss: the parts are compared after normalisation.
    assert abs(on_maps - loss(zc, 0.01 * zv)) < 1e-5


def test_gradient_reaches_both_factors():
    zc = torch.randn(24, 6, requires_grad=True)
    zv = (zc.detach() * 2 + 0.1 * torch.randn(24, 6)).requires_grad_()
    independence_loss(zc, zv).backward()
    assert zc.grad.abs().sum() > 0 and zv.grad.abs().sum() > 0
