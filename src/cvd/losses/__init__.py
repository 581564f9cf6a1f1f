"""Losses: sliced Wasserstein, the CVD independence and reconstruction constraints, InfoNCE and
the CVD total (eq. 7). Pure functions of tensors: distributed gathering is the engine's job."""

from cvd.losses.cvd_total import cvd_total
from cvd.losses.independence import independence_loss
from cvd.losses.infonce import info_nce
from cvd.losses.metric import batch_hard_triplet, classification_loss, soft_margin_triplet
from cvd.losses.reconstruction import reconstruction_loss
from cvd.losses.sliced_wasserstein import random_projections, sliced_wasserstein

__all__ = [
    "batch_hard_triplet",
    "classification_loss",
    "cvd_total",
    "independence_loss",
    "info_nce",
    "random_projections",
    "reconstruction_loss",
    "sliced_wasserstein",
    "soft_margin_triplet",
]
