"""TransGeo (Zhu, Shah and Chen, CVPR 2022, "TransGeo: Transformer is all you need for
cross-view image geo-localization").

Recipe, from the paper and its code: two DeiT-S encoders with separate weights (ground and
aerial, ``deit_small_distilled_patch16_224``), ground panoramas at 112x616, satellites at 256,
a 1000-d embedding, the weighted soft-margin triplet loss over every in-batch negative in both
directions (SAFA's, alpha 10 on squared distances), global hard-negative mining, AdamW 1e-4 with
ASAM (rho 2.5), batch 32, 100 epochs; then 50 epochs at lr 1e-5 in which the satellite is fed
at 320 px and only the 64% most attended patches are kept ("attention-guided non-uniform
cropping"), so the aerial branch sees more detail for the same number of tokens.

How it is built here (see docs/baselines/transgeo.md for the reasons):

- the head (``transgeo``) pools the (content) patch-token map and projects it to ``dim`` with one
  linear layer: DeiT's two token heads, (head(cls) + head_dist(dist)) / 2, are one affine map of
  their inputs, and CVD needs a spatial map, which the class tokens are not;
- the crop keeps the top ``crop_keep`` fraction of the aerial map's positions ranked by the
  attention that a global query token (the map's mean) pays to each position,
  ``softmax_p(<mean, x_p> / sqrt(C))``, and pools those only. With CVD on the map is the content
  map zc, so the attention is the content's. Only the satellite head crops, as in TransGeo; the
  recipe tells each head its branch (a head with no branch refuses to crop rather than crop the
  ground view silently);
- ASAM is :mod:`cvd.engine.sam`, wired by the trainer (configs say so in ``meta``).

Its soft-margin triplet is TransGeo's cross-view retrieval loss, so under CVD it is L_loc.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.baselines.base import LossContext, Recipe, register_recipe
from cvd.errors import ConfigError
from cvd.losses import soft_margin_triplet
from cvd.models.heads import Head, register_head
from cvd.schema import Option


@register_head("transgeo")
class TransGeoHead(Head):
    """Mean of the (kept) positions of the map, then a linear layer to ``dim``.

    ``crop_keep < 1`` (TransGeo's second stage: 0.64) keeps, on the satellite branch only, the
    ``int(crop_keep * h * w)`` positions with the highest attention of the map's mean token.
    Output: ``embedding`` (B, dim) and ``attention`` (B, h, w), the attention that ranked them.
    """

    option_declarations: ClassVar[dict[str, Option]] = {
        "crop_keep": Option(
            "float", "share of satellite positions kept (stage 2: 0.64)", low=0, high=1, low_open=True
        ),
    }

    def __init__(self, in_channels: int, dim: int = 1000, crop_keep: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < float(crop_keep) <= 1.0:
            raise ConfigError(f"model.head.kwargs.crop_keep: must be in (0, 1], got {crop_keep!r}")
        self.project = nn.Linear(in_channels, int(dim))
        self.embedding_dim = int(dim)
        self.crop_keep = float(crop_keep)
        self.branch: str | None = None  # set by the TransGeo recipe

    @property
    def crops(self) -> bool:
        return self.crop_keep < 1.0 and self.branch != "query"

    @property
    def pools_by_global_mean(self) -> bool:  # type: ignore[override]
        return not self.crops

    def forward_pooled(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.project(pooled)}

    @staticmethod
    def attention(feature_map: torch.Tensor) -> torch.Tensor:
        """(B, h, w) attention of the map's mean token to each position (softmax over positions)."""
        tokens = feature_map.flatten(2).float()  # (B, C, N)
        query = tokens.mean(dim=2, keepdim=True)  # (B, C, 1)
        scores = (query * tokens).sum(dim=1) / math.sqrt(tokens.shape[1])
        return scores.softmax(dim=1).view(feature_map.shape[0], *feature_map.shape[2:])

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.crops:
            return self.forward_pooled(feature_map.mean(dim=(2, 3)))
        if self.branch is None:
            raise ConfigError(
                "model.head.kwargs.crop_keep < 1: TransGeo crops the satellite branch only, and this "
                "head was not told its branch; build the model with the transgeo recipe "
                "(cvd.baselines.get_recipe('transgeo')(config).build_model(config))"
            )
        attention = self.attention(feature_map.detach())
        tokens = feature_map.flatten(2)  # (B, C, N)
        keep = max(1, int(self.crop_keep * tokens.shape[2]))
        kept = attention.flatten(1).topk(keep, dim=1).indices  # (B, keep)
        selected = tokens.gather(2, kept[:, None, :].expand(-1, tokens.shape[1], -1))
        output = self.forward_pooled(selected.mean(dim=2))
        output["attention"] = attention
        return output


class SoftMarginTriplet(nn.Module):
    """TransGeo's loss over the global batch (global mining needs every in-batch negative)."""

    def __init__(self, alpha: float = 10.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        loss = soft_margin_triplet(
            context.gather(outputs["query"]["embedding"]),
            context.gather(outputs["satellite"]["embedding"]),
            labels=context.gather(batch["label"]),
            alpha=self.alpha,
        )
        return {"soft_triplet": loss, "total": loss}


@register_recipe
class TransGeo(Recipe):
    name = "transgeo"
    contrastive = True
    default_sampler = "similarity"
    loss_schema: ClassVar[Mapping[str, Option] | None] = {
        "alpha": Option(
            "float", "soft-margin triplet's alpha", default=10.0, low=0, low_open=True, nullable=False
        ),
    }

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """The two-encoder model; each TransGeo head learns its branch, so that only the
        satellite head crops in the second stage."""
        model = super().build_model(config)
        heads = [model.head(branch) for branch in ("query", "satellite")]
        if model.share_weights:
            if any(isinstance(h, TransGeoHead) and h.crop_keep < 1.0 for h in heads):
                raise ConfigError(
                    "model.share_weights: TransGeo's crop applies to the satellite branch only; "
                    "set model.share_weights: false (TransGeo's two encoders) or crop_keep: 1.0"
                )
            return model
        for branch, head in zip(("query", "satellite"), heads):
            if isinstance(head, TransGeoHead):
                head.branch = branch
        return model

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        return SoftMarginTriplet(alpha=float(self.loss_options["alpha"]))
