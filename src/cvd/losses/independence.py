"""Intra-view independence constraint (eq. 3): SW2 between p(zc, zv) and p(zc) p(zv).

The joint is sampled by the rows [zc_i, zv_i] of a batch, the product of marginals by the rows
[zc_i, zv_pi(i)] with a random permutation pi: pairing each content with another image's
viewpoint keeps both marginals and destroys only their dependence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvd.losses.sliced_wasserstein import sliced_wasserstein


def _pooled_unit(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) or (B, C) -> (B, C): global average pool, then L2 norm per sample."""
    if z.ndim == 4:
        z = z.mean(dim=(2, 3))
    elif z.ndim != 2:
        raise ValueError(f"expected a map (B, C, h, w) or vectors (B, C), got shape {tuple(z.shape)}")
    return F.normalize(z.float(), dim=1)


def independence_loss(
    zc: torch.Tensor,
    zv: torch.Tensor,
    n_projections: int = 128,
    permutation: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_iic of one view: SW2([zc_i, zv_i], [zc_i, zv_pi(i)]) over the batch.

    What is compared: each part is globally average-pooled over its map (one sample per image,
    as the paper's z in R^d) and L2-normalised on its own. The normalisation stops the trivial
    minimum where the network shrinks zv (or zc) towards 0, which would zero any distance
    without making the factors independent; it also puts both parts on one scale, so neither
    dominates the random projections by its norm alone.
    The batch should be the global batch (the engine gathers across ranks before calling).
    """
    if zc.shape[0] != zv.shape[0]:
        raise ValueError(f"zc and zv must have the same batch size, got {zc.shape[0]} and {zv.shape[0]}")
    content = _pooled_unit(zc)
    viewpoint = _pooled_unit(zv)
    if permutation is None:
        draw_device = generator.device if generator is not None else "cpu"
        permutation = torch.randperm(content.shape[0], generator=generator, device=draw_device)
    permutation = permutation.to(content.device)
    joint = torch.cat([content, viewpoint], dim=1)
    product_of_marginals = torch.cat([content, viewpoint[permutation]], dim=1)
    return sliced_wasserstein(
        joint, product_of_marginals, n_projections=n_projections, p=2, generator=generator
    )
