"""Game4Loc (Ji et al., AAAI 2025, "Game4Loc: a UAV geo-localization benchmark from game data").

One shared timm encoder (ViT-B with rotary embeddings, one register token, global average
pooling; ``vit_base_patch16_rope_reg1_gap_256.sbb_in1k`` at 384 px), the pooled and normalised
patch tokens as the embedding, a learnable logit scale (init 1/0.07), mutually exclusive batches
(``data.sampler: mutually_exclusive``) and the *weighted InfoNCE*.

Weighted InfoNCE, as defined by Game4Loc's paper and code: for the pair (q_i, r_i) with match
weight w_i (on GTA-UAV the ground IoU of a positive or semi-positive pair), each direction's
cross-entropy has a per-pair label smoothing

    loss_i = (1 - eps_i) * (-log p(r_i | q_i)) + eps_i * mean_j (-log p(r_j | q_i)),
    eps_i  = 1 - (1 - s) * sigmoid(k * w_i)

(``s`` = ``loss.label_smoothing``, 0 in Game4Loc's recipe, so eps_i = 1 - sigmoid(k w_i) exactly
as in its ``WeightedInfoNCE``; k = 5), averaged over pairs and over the two directions. A
weak match (small w) is thus trusted less. On University-1652 and SUES-200 every positive is a
full match (w = 1): the weighting reduces to the plain symmetric InfoNCE with a constant label
smoothing of 1 - sigmoid(5) = 0.0067. Batches may carry ``positive_weight`` (B,) for data with
partial matches; without it every pair has w = 1. ``loss.weighted: false`` gives the unweighted
InfoNCE with label smoothing ``s``.

Game4Loc's loss is its cross-view contrastive loss, so under CVD it is L_loc (``contrastive``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.baselines.base import LossContext, register_recipe
from cvd.baselines.sample4geo import Sample4Geo
from cvd.losses import info_nce
from cvd.schema import Option, label_smoothing_option, logit_scale_option


def match_smoothing(weights: torch.Tensor, k: float = 5.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-pair label smoothing eps = 1 - (1 - s) * sigmoid(k * w) of Game4Loc's weighted InfoNCE."""
    return 1.0 - (1.0 - label_smoothing) * torch.sigmoid(k * weights.float())


def weighted_info_nce(
    query: torch.Tensor,
    reference: torch.Tensor,
    smoothing: torch.Tensor,
    logit_scale: torch.Tensor | float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE of paired rows with a per-pair label smoothing (Game4Loc's loss).

    ``smoothing[i]`` belongs to pair i (query i and reference i); cosine logits times
    ``logit_scale``. Without labels, row i of each side is its own location.
    """
    n = query.shape[0]
    if reference.shape[0] != n or smoothing.shape[0] != n:
        raise ValueError("weighted InfoNCE pairs query i with reference i: sizes must agree")
    return info_nce(
        query, reference, labels=labels, label_smoothing=smoothing, symmetric=True, logit_scale=logit_scale
    )


class WeightedInfoNCE(nn.Module):
    """Game4Loc's loss over the global batch; owns the learnable logit scale."""

    def __init__(
        self,
        weighted: bool = True,
        k: float = 5.0,
        label_smoothing: float = 0.0,
        logit_scale_init: float = 1 / 0.07,
    ) -> None:
        super().__init__()
        self.weighted = weighted
        self.k = k
        self.label_smoothing = label_smoothing
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))

    def smoothing(self, batch: Mapping[str, Any], size: int, device: torch.device) -> torch.Tensor:
        """eps per pair of this (local) batch: from its match weights, or s when unweighted."""
        if not self.weighted:
            return torch.full((size,), float(self.label_smoothing), device=device)
        weights = batch.get("positive_weight")
        if weights is None:
            weights = torch.ones(size, device=device)  # every pair a full match
        return match_smoothing(torch.as_tensor(weights, device=device), self.k, self.label_smoothing)

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        query = outputs["query"]["embedding"]
        smoothing = self.smoothing(batch, query.shape[0], query.device)
        loss = weighted_info_nce(
            context.gather(query),
            context.gather(outputs["satellite"]["embedding"]),
            context.gather(smoothing),
            self.logit_scale.exp(),
            labels=context.gather(batch["label"]),
        )
        return {"weighted_infonce": loss, "total": loss}


@register_recipe
class Game4Loc(Sample4Geo):
    """Shared encoder + pooled head as Sample4Geo (the head's LayerNorm starts from the encoder's
    pooled-path norm where timm keeps one, e.g. ConvNeXt); weighted InfoNCE; mutually exclusive
    batches."""

    name = "game4loc"
    contrastive = True
    default_sampler = "mutually_exclusive"
    loss_schema: ClassVar[Mapping[str, Option] | None] = {
        "weighted": Option("bool", "weight the InfoNCE positives", default=True, nullable=False),
        "k": Option("float", "weighting's k", default=5.0, low=0, nullable=False),
        "label_smoothing": label_smoothing_option(0.0),
        "logit_scale_init": logit_scale_option(),
    }

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        options = self.loss_options
        return WeightedInfoNCE(
            weighted=bool(options["weighted"]),
            k=float(options["k"]),
            label_smoothing=float(options["label_smoothing"]),
            logit_scale_init=float(options["logit_scale_init"]),
        )
