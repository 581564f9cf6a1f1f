"""Inter-view reconstruction constraint (eq. 5): mean squared error against the (resized) image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE averaged over pixels, channels and batch; the target gets no gradient."""
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ in shape"
        )
    return F.mse_loss(reconstruction.float(), target.detach().float())
