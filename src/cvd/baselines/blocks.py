"""Building blocks shared by the classification-based baselines (LPN, SDPL, MCCG, FSRA, MBF)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvd.errors import ConfigError


def require_num_classes(num_classes: int | None, head: str) -> int:
    """Classification heads need the number of training locations; say where it comes from."""
    if num_classes is None or isinstance(num_classes, bool) or int(num_classes) < 1:
        raise ConfigError(
            f"model.num_classes: head '{head}' needs the number of training locations (got "
            f"{num_classes!r}); `cvd fit` sets it from the training set"
        )
    return int(num_classes)


def copy_pretrained_head_norm(backbone: nn.Module, target: nn.Module | None) -> None:
    """Start ``target`` from the encoder's pretrained pooled-path norm (timm ConvNeXt's
    ``head.norm``) when both are LayerNorms of the same width, so that a head pooling through it
    starts from timm's own pooled feature (Sample4Geo, MCCG); otherwise leave it as built."""
    source = getattr(getattr(backbone.model, "head", None), "norm", None)
    if (
        isinstance(source, nn.LayerNorm)
        and isinstance(target, nn.LayerNorm)
        and source.normalized_shape == target.normalized_shape
    ):
        target.load_state_dict(source.state_dict())
        target.eps = source.eps


def concatenate_normalised(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Part features, each L2-normalised and scaled by 1/sqrt(parts), concatenated (unit norm).

    The test scripts of LPN, FSRA and MCCG: every part weighs the same in the cosine similarity,
    whatever its norm.
    """
    scale = 1.0 / math.sqrt(len(features))
    return torch.cat([F.normalize(feature, dim=-1) * scale for feature in features], dim=-1)


class ClassBlock(nn.Module):
    """University-1652's classifier block: bottleneck (Linear, BatchNorm, [ReLU], Dropout) then a
    linear classifier over the training locations.

    Returns the bottleneck feature (what the baselines retrieve with) and the logits (what their
    instance loss trains). Weights are initialised as in the University-1652 baseline: Kaiming
    for the bottleneck, N(0, 0.001) for the classifier, BatchNorm weight N(1, 0.02).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bottleneck: int = 512,
        dropout: float = 0.5,
        relu: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_features, bottleneck), nn.BatchNorm1d(bottleneck)]
        if relu:
            layers.append(nn.LeakyReLU(0.1))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.bottleneck = nn.Sequential(*layers)
        self.classifier = nn.Linear(bottleneck, num_classes)
        self.out_features = bottleneck
        nn.init.kaiming_normal_(self.bottleneck[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.bottleneck[0].bias)
        nn.init.normal_(self.bottleneck[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.bottleneck[1].bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bottleneck feature (B, bottleneck), logits (B, num_classes)) of pooled features (B, C)."""
        feature = self.bottleneck(features)
        return feature, self.classifier(feature)
