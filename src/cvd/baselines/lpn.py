"""LPN (Wang et al., TCSVT 2021, "Each Part Matters: Local Patterns Facilitate Cross-View
Geo-Localization"): square-ring parts, one classifier per part.

The method, as its reference code trains it: a ResNet-50 (torchvision ImageNet weights, the
last stage at stride 1) gives a feature map; the map is cut into ``blocks`` square rings around
its centre (``cvd.baselines.partition``) and each ring is average-pooled; every ring has its own
University-1652 classifier block (bottleneck 512, dropout) predicting the training location,
and the instance loss is the sum of the rings' cross-entropies over both views. The classifiers
are shared by the two views -- they are what ties the two feature spaces together -- even where
the encoders are not (CVUSA/CVACT and the SUES-200 benchmark's LPN use one ResNet per view). On
CVUSA/CVACT the ground panorama is cut into horizontal bands instead of rings (LPN's "row"
partition; the satellite keeps its rings). Retrieval uses the rings' bottleneck features, each
L2-normalised and scaled by 1/sqrt(blocks), concatenated.

What SDPL and MBF reuse (the part-classifier head base, the model whose single head serves both
branches, the per-part loss, the recipe base) is in ``cvd.baselines.parts``.

CVD: the head (rings, classifiers) runs on the content map zc; the rings' classification loss is
kept as it is and, with ``cvd.loc: auto``, an InfoNCE on the content embeddings is added as the
paper's L_loc (see ``cvd.engine.objective``).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.baselines.base import register_recipe
from cvd.baselines.blocks import require_num_classes
from cvd.baselines.partition import (
    horizontal_bands,
    masked_pool,
    projected_part_means,
    resize_for_rings,
    ring_grid_size,
    square_rings,
)
from cvd.baselines.parts import PartClassifiers, PartHead, PartRecipe
from cvd.errors import ConfigError
from cvd.models.cvd import BranchContent
from cvd.models.heads import register_head
from cvd.schema import Option

LOGGER = logging.getLogger("cvd")

PARTITIONS = ("rings", "rows")


@register_head("lpn")
class LPNHead(PartHead):
    """Square rings (or, per branch, horizontal bands), pooled, one classifier block each."""

    option_declarations: ClassVar[dict[str, Option]] = {
        "pool": Option("str", "pooling of each part", choices=("avg", "max")),
        "query_partition": Option("str", "parts of the query branch", choices=PARTITIONS),
        "satellite_partition": Option("str", "parts of the satellite branch", choices=PARTITIONS),
    }

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None = None,
        blocks: int = 4,
        bottleneck: int = 512,
        dropout: float = 0.5,
        pool: str = "avg",
        query_partition: str = "rings",
        satellite_partition: str = "rings",
    ) -> None:
        super().__init__()
        for key, value in (
            ("query_partition", query_partition),
            ("satellite_partition", satellite_partition),
        ):
            if value not in PARTITIONS:
                raise ConfigError(f"model.head.kwargs.{key}: {value!r} is not one of {list(PARTITIONS)}")
        if pool not in ("avg", "max"):
            raise ConfigError(f"model.head.kwargs.pool: {pool!r} is not 'avg' or 'max'")
        if int(blocks) < 1:
            raise ConfigError(f"model.head.kwargs.blocks: must be >= 1, got {blocks!r}")
        self.blocks = int(blocks)
        self.pool = pool
        self.partition = {"query": query_partition, "satellite": satellite_partition}
        self.classifiers = PartClassifiers(
            in_channels, self.blocks, require_num_classes(num_classes, "lpn"), bottleneck, dropout
        )
        self.embedding_dim = self.blocks * int(bottleneck)

    def pool_parts(self, feature_map: torch.Tensor, branch: str) -> torch.Tensor:
        """(B, C, blocks): each ring (or band) of ``branch``'s partition pooled."""
        if self.partition[branch] == "rows":
            masks = horizontal_bands(feature_map.shape[-2], feature_map.shape[-1], self.blocks)
        else:
            feature_map = resize_for_rings(feature_map, self.blocks)
            masks = square_rings(feature_map.shape[-2], feature_map.shape[-1], self.blocks)
        return masked_pool(feature_map, masks, self.pool)

    def forward(self, feature_map: torch.Tensor, branch: str = "query") -> dict[str, Any]:
        features, logits = self.classifiers(self.pool_parts(feature_map, branch))
        return self.outputs(features, logits)

    def forward_projected(
        self, features: torch.Tensor, projection: nn.Module, branch: str = "query"
    ) -> dict[str, Any]:
        """Average-pooled parts of a map that needs no resizing: each part's mean of the content
        conv's output straight from ``features`` (``projected_part_means``), exactly equal."""
        height, width = features.shape[-2:]
        rows = self.partition[branch] == "rows"
        conv = projection.conv if isinstance(projection, BranchContent) else projection
        if self.pool != "avg" or not isinstance(conv, nn.Conv2d):
            return super().forward_projected(features, projection, branch)
        if not rows and ring_grid_size(height, width, self.blocks) != (height, width):
            return super().forward_projected(features, projection, branch)
        masks = (horizontal_bands if rows else square_rings)(height, width, self.blocks)
        parts, logits = self.classifiers(projected_part_means(features, conv, masks))
        return self.outputs(parts, logits)


@register_recipe
class LPN(PartRecipe):
    name = "lpn"
