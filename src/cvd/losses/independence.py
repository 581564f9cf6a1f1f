"""Intra-view independence constraint (eq. 3): SW2 between p(zc, zv) and p(zc) p(zv).

Two estimators of the same distance, chosen by ``estimator``:

``"paper"`` (as the paper reads): each factor globally average-pooled and L2-normalised, the
joint sampled by the rows [zc_i, zv_i] of a batch, the product of marginals by [zc_i, zv_pi(i)]
with a random permutation pi, SW2 over ``n_projections`` random directions. At our sizes it is
blind: a random direction of a d = 1280 joint space sees a dependence of strength rho between
the factors only as a correlation of order rho / sqrt(d) between its two halves, far below the
sampling noise of a 32-point sort (benchmarks/independence.py); and its L2 normalisation lets a
collapsing viewpoint (all zv pointing one way) lower the loss without any independence.

``"channel_pairs"`` (the toolkit's): the slices are the pairs (content channel i, viewpoint
channel j) of the standardised factors, theta = (e_i +- e_j) / sqrt(2), every pair at once, and
the 1-D W2 of each slice is taken between the Gaussians with the slice's moments, which is exact
for Gaussian factors: after standardisation the product's slice has variance 1 and the joint's
1 +- r_ij (r_ij the batch correlation of the two channels), so

    SW2^2 = mean over i, j and the sign of (sqrt(1 +- r_ij) - 1)^2.

It sums the evidence of all d_c * d_v channel pairs instead of sampling a few random mixtures,
so at d = 1280 and B = 32 a planted dependence moves it by many times its own noise, and its
gradient lowers every cross-correlation. Standardising each channel also removes the
collapse minimum: a factor cannot make itself small to look independent. It sees second-order
(linear) dependence only; ``cvd analyze`` measures the rest with HSIC and distance correlation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvd.losses.sliced_wasserstein import sliced_wasserstein

ESTIMATORS = ("paper", "channel_pairs")
_EPS = 1e-6


def pool_factor(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) or (B, C) -> (B, C) float: the global average pool, one sample per image."""
    if z.ndim == 4:
        z = z.mean(dim=(2, 3))
    elif z.ndim != 2:
        raise ValueError(f"expected a map (B, C, h, w) or vectors (B, C), got shape {tuple(z.shape)}")
    return z.float()


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each column to batch mean 0 and (biased) variance 1, whatever its scale; a constant column stays 0."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred / centred.pow(2).mean(dim=0, keepdim=True).clamp_min(1e-20).sqrt()


def cross_correlation(content: torch.Tensor, viewpoint: torch.Tensor) -> torch.Tensor:
    """(C_c, C_v) batch correlations between every content and every viewpoint channel."""
    return standardise(content).T @ standardise(viewpoint) / content.shape[0]


def sw2_from_correlation(correlation: torch.Tensor) -> torch.Tensor:
    """SW2 over the channel-pair slices (e_i +- e_j)/sqrt2 of standardised factors whose
    correlations are ``correlation``, each slice's W2 between moment-matched Gaussians."""
    correlation = correlation.clamp(-1.0 + _EPS, 1.0 - _EPS)
    per_slice = ((1.0 + correlation).sqrt() - 1.0).pow(2) + ((1.0 - correlation).sqrt() - 1.0).pow(2)
    return (0.5 * per_slice.mean()).clamp_min(1e-20).sqrt()


def channel_pairs_sw2(content: torch.Tensor, viewpoint: torch.Tensor) -> torch.Tensor:
    """SW2 between the joint and the product of marginals over standardised channel-pair slices,
    estimated on this batch alone (see the module docstring)."""
    return sw2_from_correlation(cross_correlation(content, viewpoint))


class RunningCorrelation(nn.Module):
    """The factors' correlations over a window of batches: (1 - m) * previous + m * this batch's.

    A batch of 32 measures each of the d_c x d_v correlations with a noise of 1/sqrt(32), which
    drowns a dependence spread thinly over many channels (a 64-channel viewpoint tied to a 1280-
    channel content, say). The window is the estimator's sample, ~1/m batches: its value and the
    direction of its gradient follow the dependence that persists from batch to batch, while the
    gradient itself still comes from the current batch only (the past is a constant). In
    evaluation mode, and with ``momentum=1``, it is the current batch's alone.
    """

    def __init__(self, content_channels: int, viewpoint_channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.momentum = momentum
        self.register_buffer("correlation", torch.zeros(content_channels, viewpoint_channels))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, content: torch.Tensor, viewpoint: torch.Tensor) -> torch.Tensor:
        batch = cross_correlation(content, viewpoint)
        if not self.training or self.momentum == 1.0:
            return batch
        momentum = 1.0 if int(self.updates) == 0 else self.momentum
        mixed = (1.0 - momentum) * self.correlation + momentum * batch
        with torch.no_grad():
            self.correlation.copy_(mixed.detach())
            self.updates += 1
        return mixed


def independence_loss(
    zc: torch.Tensor,
    zv: torch.Tensor,
    n_projections: int = 128,
    permutation: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    estimator: str = "paper",
) -> torch.Tensor:
    """L_iic of one view, SW2(p(zc, zv), p(zc) p(zv)) over the batch, by ``estimator``.

    Both estimators pool each factor over its map first (one sample per image, as the paper's
    z in R^d). ``n_projections``, ``permutation`` and ``generator`` concern ``"paper"`` only.
    The batch should be the global batch (the engine gathers across ranks before calling).
    """
    if zc.shape[0] != zv.shape[0]:
        raise ValueError(f"zc and zv must have the same batch size, got {zc.shape[0]} and {zv.shape[0]}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    content = pool_factor(zc)
    viewpoint = pool_factor(zv)
    if estimator == "channel_pairs":
        return channel_pairs_sw2(content, viewpoint)
    content = F.normalize(content, dim=1)
    viewpoint = F.normalize(viewpoint, dim=1)
    if permutation is None:
        draw_device = generator.device if generator is not None else "cpu"
        permutation = torch.randperm(content.shape[0], generator=generator, device=draw_device)
    permutation = permutation.to(content.device)
    joint = torch.cat([content, viewpoint], dim=1)
    product_of_marginals = torch.cat([content, viewpoint[permutation]], dim=1)
    return sliced_wasserstein(
        joint, product_of_marginals, n_projections=n_projections, p=2, generator=generator
    )
