"""The toolkit's estimator of eq. 3 (``estimator="channel_pairs"``): hand-worked values, POT as the
reference for the per-slice W2, and separation of planted dependence at the real sizes."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from cvd.losses import independence_loss


def _channel_pairs(zc, zv):
    return independence_loss(zc, zv, estimator="channel_pairs").item()


def test_uncorrelated_channels_give_zero():
    # Worked by hand: the two +-1 columns are exactly uncorrelated, so every slice's joint
    # variance is 1, the product's too, and the distance is 0.
    content = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    viewpoint = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert _channel_pairs(content, viewpoint) < 1e-8


def test_perfectly_correlated_channels_by_hand():
    # r = 1: the (e_i + e_j)/sqrt2 slice has joint variance 2 and the (e_i - e_j)/sqrt2 slice 0,
    # the product 1 on both: SW2^2 = ((sqrt2 - 1)^2 + (0 - 1)^2) / 2.
    content = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    expected = math.sqrt(((math.sqrt(2.0) - 1.0) ** 2 + 1.0) / 2.0)
    assert _channel_pairs(content, 3 * content + 1) == pytest.approx(expected, abs=1e-3)
    assert _channel_pairs(content, -content) == pytest.approx(expected, abs=1e-3)


def test_the_slice_distance_is_the_wasserstein_distance_of_gaussian_factors():
    # For Gaussian factors the moment-matched W2 of a slice is its exact W2: compare with POT's
    # 1-D W2 between the slice of a large joint sample and of its product of marginals.
    rho, n = 0.6, 200_000
    rng = np.random.default_rng(0)
    c = rng.standard_normal(n)
    v = rho * c + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    shuffled = rng.permutation(v)
    squared = []
    for sign in (1.0, -1.0):
        joint = (c + sign * v) / math.sqrt(2)
        product = (c + sign * shuffled) / math.sqrt(2)
        squared.append(ot.wasserstein_1d(joint, product, p=2))  # POT returns W2^2 for p=2
    reference = math.sqrt(np.mean(squared))
    got = _channel_pairs(torch.tensor(c[:, None]), torch.tensor(v[:, None]))
    assert got == pytest.approx(reference, rel=0.02)


def test_scaling_or_shifting_a_factor_changes_nothing():
    # No collapse minimum: a factor cannot shrink itself into looking independent.
    generator = torch.Generator().manual_seed(3)
    zc = torch.randn(32, 20, 4, 4, generator=generator)
    zv = zc[:, :8] + torch.randn(32, 8, 4, 4, generator=generator)
    reference = _channel_pairs(zc, zv)
    assert _channel_pairs(zc, 0.01 * zv + 5.0) == pytest.approx(reference, rel=1e-4)


def _planted(batch, content_dim, viewpoint_dim, rho, generator):
    """zv's every channel correlated rho with one random direction of zc (the 'full' model)."""
    zc = torch.randn(batch, content_dim, generator=generator)
    basis = torch.linalg.qr(torch.randn(content_dim, viewpoint_dim, generator=generator))[0]
    noise = torch.randn(batch, viewpoint_dim, generator=generator)
    return zc, rho * zc @ basis + math.sqrt(1 - rho**2) * noise


@pytest.mark.parametrize(("content_dim", "viewpoint_dim"), [(640, 640)])
def test_planted_dependence_at_d1280_b32_stands_far_above_the_noise(content_dim, viewpoint_dim):
    # d = 1280 split in two halves (the paper's module) and 1280 content + 64 viewpoint (ours),
    # a batch of 32: the value under dependence must exceed the independent values' mean by many
    # times their standard deviation (the paper's estimator does not: benchmarks/independence.py).
    generator = torch.Generator().manual_seed(0)
    null, planted = [], []
    for _ in range(25):
        zc, zv = _planted(32, content_dim, viewpoint_dim, 0.0, generator)
        null.append(_channel_pairs(zc, zv))
        zc, zv = _planted(32, content_dim, viewpoint_dim, 0.6, generator)
        planted.append(_channel_pairs(zc, zv))
    null, planted = np.array(null), np.array(planted)
    assert (planted.mean() - null.mean()) / null.std() > 5
    assert planted.min() > null.max()


def test_gradient_lowers_the_dependence():
    # d loss / d rho > 0 for the planted model at the real sizes: descending the loss weakens the
    # dependence (for 20 of 20 draws).
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        rho = torch.tensor(0.5, requires_grad=True)
        zc = torch.randn(32, 640, generator=generator)
        basis = torch.linalg.qr(torch.randn(640, 640, generator=generator))[0]
        zv = rho * zc @ basis + (1 - rho**2).sqrt() * torch.randn(32, 640, generator=generator)
        independence_loss(zc, zv, estimator="channel_pairs").backward()
        assert rho.grad > 0


def test_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="estimator"):
        independence_loss(torch.randn(4, 2), torch.randn(4, 2), estimator="hsic")


def _running_value(batches, momentum=0.1):
    from cvd.losses.independence import RunningCorrelation, sw2_from_correlation

    running = RunningCorrelation(batches[0][0].shape[1], batches[0][1].shape[1], momentum).train()
    for content, viewpoint in batches:
        value = sw2_from_correlation(running(content, viewpoint))
    return float(value)


def test_running_window_separates_a_thin_dependence_at_the_toolkits_sizes():
    # 1280 content and 64 viewpoint channels (the toolkit's split), batches of 32: one batch
    # barely sees a dependence of 64 directions among 1280 x 64 pairs; a window of ~10 batches does.
    generator = torch.Generator().manual_seed(5)
    null, planted = [], []
    for _ in range(12):
        for values, rho in ((null, 0.0), (planted, 0.6)):
            basis = torch.linalg.qr(torch.randn(1280, 64, generator=generator))[0]
            batches = []
            for _ in range(30):
                zc = torch.randn(32, 1280, generator=generator)
                noise = torch.randn(32, 64, generator=generator)
                batches.append((zc, rho * zc @ basis + math.sqrt(1 - rho**2) * noise))
            values.append(_running_value(batches))
    null, planted = np.array(null), np.array(planted)
    assert (planted.mean() - null.mean()) / null.std() > 5
    assert planted.min() > null.max()


def test_running_window_is_the_batch_alone_in_evaluation_and_with_momentum_one():
    from cvd.losses.independence import RunningCorrelation, cross_correlation

    content, viewpoint = torch.randn(16, 5), torch.randn(16, 3)
    running = RunningCorrelation(5, 3, 0.1)
    running(content, viewpoint)
    other = torch.randn(16, 5), torch.randn(16, 3)
    mixed = running(*other)
    assert torch.allclose(
        mixed, 0.9 * cross_correlation(content, viewpoint) + 0.1 * cross_correlation(*other)
    )
    assert torch.allclose(running.eval()(*other), cross_correlation(*other))
