"""Sample4Geo (Deuser et al., ICCV 2023): one shared encoder, symmetric InfoNCE, smart sampling.

Recipe, from the paper and the reference table (``shared/reference/benchmarks.md``): a timm
encoder shared by both views; the embedding is the pooled last feature map (for ConvNeXt, global
average pooling followed by the model's LayerNorm); a symmetric InfoNCE loss with label
smoothing 0.1 and a learnable logit scale initialised to 1/0.07; batches with one pair per
location; on CVUSA/CVACT, GPS-neighbour batches first and similarity-mined hard negatives after
each evaluation. With CVD on, the head runs on the content map and this InfoNCE is CVD's L_loc.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.baselines.base import LossContext, Recipe, register_recipe
from cvd.baselines.blocks import copy_pretrained_head_norm
from cvd.losses import info_nce
from cvd.schema import Option, label_smoothing_option, logit_scale_option


class SymmetricInfoNCE(nn.Module):
    """Sample4Geo's loss over the global batch; owns the learnable logit scale."""

    def __init__(self, label_smoothing: float = 0.1, logit_scale_init: float = 1 / 0.07) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        query = context.gather(outputs["query"]["embedding"])
        satellite = context.gather(outputs["satellite"]["embedding"])
        labels = context.gather(batch["label"])
        loss = info_nce(
            query,
            satellite,
            labels=labels,
            ref_labels=labels,
            label_smoothing=self.label_smoothing,
            symmetric=True,
            logit_scale=self.logit_scale.exp(),
        )
        return {"infonce": loss, "total": loss}


@register_recipe
class Sample4Geo(Recipe):
    name = "sample4geo"
    contrastive = True
    default_sampler = "location_shuffle"
    loss_schema: ClassVar[Mapping[str, Option] | None] = {
        "label_smoothing": label_smoothing_option(0.1),
        "logit_scale_init": logit_scale_option(),
    }

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """The shared encoder and pooled head; the head's LayerNorm starts from the encoder's own
        pretrained pooled-path norm (ConvNeXt's ``head.norm``) when their widths agree, so the
        baseline's embedding at step 0 is exactly timm's pooled feature, as in Sample4Geo."""
        model = super().build_model(config)
        for branch in ("query", "satellite"):
            project = model.head(branch).project
            copy_pretrained_head_norm(model.backbone(branch), project[0] if len(project) else None)
        return model

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        return SymmetricInfoNCE(
            label_smoothing=float(self.loss_options["label_smoothing"]),
            logit_scale_init=float(self.loss_options["logit_scale_init"]),
        )
