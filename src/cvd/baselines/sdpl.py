"""SDPL (Chen et al., TCSVT 2024, "SDPL: Shifting-Dense Partition Learning for UAV-View
Geo-Localization"): LPN with dense parts and the shifting-fusion of several part sets.

From the paper and its reference code (``C-water/SDPL_release``):

- dense partition: LPN's ``blocks`` square rings and every run of consecutive rings (pairs,
  triples, ..., the whole map): 10 parts for 4 rings, each pooled by its own GeM with a learnable
  exponent per channel (initial p = 3);
- shifting fusion: the partition is repeated around centres moved along the diagonal by
  ``shifts`` cells ((-2, -2), (0, 0), (2, 2) on the 32x32 map of a 512 px image), and the part
  features of the shifted sets are summed with weights predicted from the map itself (1x1 conv
  to half the channels, ReLU, global average, three linear layers with dropout 0.5, softmax) --
  robustness to targets that are not centred;
- one University-1652 classifier block per part (shared by the views), the cross-entropies
  summed over parts and views; retrieval with the parts' normalised bottleneck features.

Where we differ from the reference code (see docs/baselines/sdpl.md): its tenth part is, by an
aliasing slip, the outer ring again (``x_9 = x`` after ``x`` was overwritten); we use the whole
map, the part the paper describes ("explicitly maintaining the global structure"). Its GeM
averages over the part's bounding square with the other cells at eps; ours over the part's own
cells.

CVD: the head (fusion weights, parts, GeM, classifiers) runs on the content map zc; the
classification loss is kept and an InfoNCE on the content embeddings is added as L_loc.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.baselines.base import register_recipe
from cvd.baselines.blocks import require_num_classes
from cvd.baselines.partition import dense_parts, masked_gem, resize_for_rings
from cvd.baselines.parts import PartClassifiers, PartHead, PartRecipe
from cvd.errors import ConfigError
from cvd.models.heads import register_head
from cvd.schema import Option


class ShiftWeights(nn.Sequential):
    """SDPL's shift-guided weights: map (B, C, H, W) -> softmax over the S shifted part sets."""

    def __init__(self, in_channels: int, shifts: int, hidden: int = 512, dropout: float = 0.5) -> None:
        reduced = max(1, in_channels // 2)
        super().__init__(
            nn.Conv2d(in_channels, reduced, kernel_size=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(reduced, hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, shifts),
            nn.Softmax(dim=1),
        )


def dense_part_count(blocks: int) -> int:
    """Runs of consecutive rings among ``blocks`` rings: 10 for 4 (SDPL's ``block_n``)."""
    return blocks * (blocks + 1) // 2


@register_head("sdpl")
class SDPLHead(PartHead):
    """Dense ring parts around shifted centres, GeM-pooled, fused by predicted weights."""

    option_declarations: ClassVar[dict[str, Option]] = {
        "shifts": Option("list", "offsets of the shifted partitions"),
        "gem_p": Option("float", "GeM exponent of the parts", low=0, low_open=True),
        "fusion_hidden": Option("int", "hidden width of the part fusion", low=1),
    }

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None = None,
        blocks: int = 4,
        shifts: Sequence[int] = (-2, 0, 2),
        bottleneck: int = 512,
        dropout: float = 0.75,
        gem_p: float = 3.0,
        fusion_hidden: int = 512,
    ) -> None:
        super().__init__()
        if int(blocks) < 1:
            raise ConfigError(f"model.head.kwargs.blocks: must be >= 1, got {blocks!r}")
        if not shifts:
            raise ConfigError("model.head.kwargs.shifts: give at least one shift (0 = LPN's centre)")
        self.blocks = int(blocks)
        self.shifts = tuple(int(shift) for shift in shifts)
        self.parts = dense_part_count(self.blocks)
        self.shift_weights = ShiftWeights(in_channels, len(self.shifts), int(fusion_hidden))
        self.gem_p = nn.Parameter(torch.full((self.parts, in_channels), float(gem_p)))
        self.classifiers = PartClassifiers(
            in_channels, self.parts, require_num_classes(num_classes, "sdpl"), bottleneck, dropout
        )
        self.embedding_dim = self.parts * int(bottleneck)

    def part_sets(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, S, P): the dense parts around each shifted centre, GeM-pooled."""
        height, width = feature_map.shape[-2:]
        masks = torch.stack(
            [dense_parts(height, width, self.blocks, (shift, shift)) for shift in self.shifts]
        )
        return masked_gem(feature_map, masks, self.gem_p)

    def forward(self, feature_map: torch.Tensor, branch: str = "query") -> dict[str, Any]:
        weights = self.shift_weights(feature_map).float()  # (B, S), from the map at its own size
        resized = resize_for_rings(feature_map, self.blocks)
        fused = torch.einsum("bcsp,bs->bcp", self.part_sets(resized), weights).to(feature_map.dtype)
        features, logits = self.classifiers(fused)
        output = self.outputs(features, logits)
        output["shift_weights"] = weights
        return output


@register_recipe
class SDPL(PartRecipe):
    name = "sdpl"
