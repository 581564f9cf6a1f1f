"""Inter-view reconstruction constraint (eq. 5): mean squared error against the target."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def target_variance(target: torch.Tensor) -> torch.Tensor:
    """The target's variance over the batch (per channel and cell, averaged): the error of
    predicting the batch mean, the scale ``reconstruction_loss`` divides by when asked to."""
    return target.detach().float().var(dim=0, unbiased=False).mean().clamp_min(1e-12)


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, normaliser: torch.Tensor | float | None = None
) -> torch.Tensor:
    """MSE averaged over pixels (or feature cells), channels and batch; the target gets no gradient.

    With ``normaliser`` (e.g. :func:`target_variance` of the global batch) the MSE is divided by
    it: the fraction of variance left unexplained, 1 for predicting the batch mean, whatever the
    scale of the target (backbone features differ in scale between backbones).
    """
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ in shape"
        )
    error = F.mse_loss(reconstruction.float(), target.detach().float())
    return error if normaliser is None else error / normaliser
