"""MCCG (Shen et al., TCSVT 2023): a ConvNeXt with multiple classifiers over attention branches.

"MCCG: A ConvNeXt-based Multiple-Classifier Method for Cross-View Geo-Localization". On the last
ConvNeXt-T feature map, three branches each feed a classifier (University-1652's ``ClassBlock``,
512-d bottleneck):

- the global branch: global average pooling followed by ConvNeXt's final LayerNorm;
- ``blocks`` (2) triplet-attention branches (Misra et al., "Rotate to Attend", WACV 2021), the
  two cross-dimension gates of triplet attention: the map is rotated so that its height (then its
  width) becomes the pooled axis, max- and mean-pooled along it ("Z-pool"), a 7x7 conv + BatchNorm
  + sigmoid gives an attention map over the channel-width (then height-channel) plane, the
  rotated map is scaled by it and rotated back, then average-pooled. These are the "channel and
  spatial attention" branches of the paper: each gate mixes one spatial axis with the channels.

The retrieval embedding is the concatenation of the L2-normalised bottleneck features (branches
first, global last), as MCCG's test script builds it. Losses are FSRA's, which MCCG's training
script reuses unchanged: per view the cross-entropy averaged over the classifiers, plus a
cross-view batch-hard triplet loss (margin 0.3, weight 1) per classifier, averaged
(:class:`cvd.baselines.fsra.ClassificationTripletLoss`).

With CVD on, the head (norm, gates, classifiers) runs on the content map zc; the global
LayerNorm then starts fresh, since ConvNeXt's pretrained norm has the full width.

MCCG's training images get more augmentation than the University-1652 pipeline shared by the
part-based baselines (``data.augment`` pad / satellite_affine_degrees / view_flip_prob): its
script also applies AutoAugment's ImageNet policy to drone images, colour jitter (0.1, no hue) to
both views and random erasing (p 0.5) to drone images. The recipe adds those from its own
``data.augment`` keys, :data:`MCCG_AUGMENT_OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.baselines.base import register_recipe
from cvd.baselines.blocks import concatenate_normalised, copy_pretrained_head_norm, require_num_classes
from cvd.baselines.fsra import ClassificationRecipe, location_class_block
from cvd.data.transforms import AUGMENT_SCHEMA
from cvd.errors import ConfigError
from cvd.models.heads import Head, register_head
from cvd.schema import Option, declared_defaults

# Rotations of a (B, C, H, W) map that bring the axis to pool across into dimension 1. Each is
# its own inverse, so the same permutation rotates back.
ACROSS_HEIGHT = (0, 2, 1, 3)  # (B, H, C, W): attention over the channel-width plane
ACROSS_WIDTH = (0, 3, 2, 1)  # (B, W, H, C): attention over the height-channel plane


class AttentionGate(nn.Module):
    """One cross-dimension gate of triplet attention (Z-pool, 7x7 conv, BatchNorm, sigmoid).

    Written here: timm has no triplet attention. The conv has no bias and the BatchNorm uses
    momentum 0.01, as in the reference implementation MCCG uses.
    """

    def __init__(self, permutation: tuple[int, int, int, int], kernel_size: int = 7) -> None:
        super().__init__()
        self.permutation = permutation
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        rotated = feature_map.permute(*self.permutation)
        pooled = torch.cat([rotated.amax(dim=1, keepdim=True), rotated.mean(dim=1, keepdim=True)], dim=1)
        gate = torch.sigmoid(self.norm(self.conv(pooled)))
        return (rotated * gate).permute(*self.permutation)


@register_head("mccg")
class MCCGHead(Head):
    """Global branch + ``blocks`` triplet-attention branches, one ClassBlock each.

    Output: ``embedding`` (B, bottleneck * (blocks + 1)), ``features`` (the bottleneck features,
    branches then global) and, in training mode, ``logits`` (one (B, num_classes) tensor per
    classifier, same order).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None = None,
        blocks: int = 2,
        bottleneck: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        num_classes = require_num_classes(num_classes, "mccg")
        if blocks not in (0, 1, 2):
            raise ConfigError(
                f"model.head.kwargs.blocks: triplet attention has two cross-dimension gates, so 0, 1 "
                f"or 2 attention branches (MCCG: 2); got {blocks!r}"
            )
        self.num_classes = num_classes
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        self.gates = nn.ModuleList(AttentionGate(p) for p in (ACROSS_HEIGHT, ACROSS_WIDTH)[:blocks])
        self.branch_blocks = nn.ModuleList(
            location_class_block(in_channels, num_classes, bottleneck, dropout) for _ in range(blocks)
        )
        self.global_block = location_class_block(in_channels, num_classes, bottleneck, dropout)
        self.embedding_dim = bottleneck * (blocks + 1)

    def forward(self, feature_map: torch.Tensor) -> dict[str, Any]:
        inputs = [gate(feature_map).mean(dim=(2, 3)) for gate in self.gates]
        inputs.append(self.norm(feature_map.mean(dim=(2, 3))))
        outputs = [block(x) for block, x in zip([*self.branch_blocks, self.global_block], inputs)]
        features = [feature for feature, _ in outputs]
        result: dict[str, Any] = {"embedding": concatenate_normalised(features), "features": features}
        if self.training:
            result["logits"] = [logits for _, logits in outputs]
        return result


MCCG_AUGMENT_SCHEMA: dict[str, Option] = {
    "query_autoaugment": Option(
        "bool", "AutoAugment (ImageNet policy) on drone images", default=False, nullable=False
    ),
    "view_color_jitter": Option(
        "float", "ColorJitter strength on both views (hue 0)", default=0.0, low=0, nullable=False
    ),
    "query_erasing_prob": Option(
        "float", "random erasing on the drone tensor", default=0.0, low=0, high=1, nullable=False
    ),
}
MCCG_AUGMENT_OPTIONS = declared_defaults(MCCG_AUGMENT_SCHEMA)
"""MCCG's ``data.augment`` keys beyond the shared ones (cvd.data.transforms.AUGMENT_OPTIONS):
AutoAugment (ImageNet policy) on drone images first; ColorJitter(s, s, s, hue 0) on both views
next; random erasing with this probability on the normalised drone tensor last, as its script
orders them. torchvision's AutoAugment and RandomErasing stand in for the copies MCCG ships."""


def mccg_pair_transform(config: Mapping[str, Any], data_config: Mapping[str, Any]) -> Callable:
    """The shared paired transform wrapped with MCCG's extra augmentations (see the constants)."""
    from torchvision import transforms as T

    from cvd.data.transforms import build_pair_transform

    data = dict(config.get("data") or {})
    augment = dict(data.get("augment") or {})
    extras = {**MCCG_AUGMENT_OPTIONS, **{k: augment.pop(k) for k in MCCG_AUGMENT_OPTIONS if k in augment}}
    try:
        pair = build_pair_transform(
            {**config, "data": {**data, "augment": augment}}, data_config, training=True
        )
    except ConfigError as error:
        raise ConfigError(f"{error} (the mccg recipe also knows {sorted(MCCG_AUGMENT_OPTIONS)})") from error
    query_before: list[Callable] = []
    if extras["query_autoaugment"]:
        query_before.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    strength = float(extras["view_color_jitter"])
    if strength > 0:
        jitter = T.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=0.0)
        query_before.append(jitter)
        pair.satellite_transform = T.Compose([jitter, pair.satellite_transform])
    query_after: list[Callable] = []
    erasing = float(extras["query_erasing_prob"])
    if erasing > 0:
        query_after.append(T.RandomErasing(p=erasing, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    if query_before or query_after:
        pair.query_transform = T.Compose([*query_before, pair.query_transform, *query_after])
    return pair


@register_recipe
class MCCG(ClassificationRecipe):
    name = "mccg"
    augment_schema: ClassVar[Mapping[str, Option]] = {**AUGMENT_SCHEMA, **MCCG_AUGMENT_SCHEMA}

    def train_transform(self, config: Mapping[str, Any], data_config: Mapping[str, Any]) -> Callable:
        return mccg_pair_transform(config, data_config)

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """The model; the global branch's LayerNorm starts from ConvNeXt's pretrained final norm
        (timm's ``head.norm``) when the widths agree (CVD off), as MCCG pools through it."""
        model = super().build_model(config)
        for branch in ("query", "satellite"):
            copy_pretrained_head_norm(model.backbone(branch), model.head(branch).norm)
        return model
