"""FSRA (Dai et al., TCSVT 2021): heat-map feature segmentation and region alignment on a ViT.

"A Transformer-Based Feature Segmentation and Region Alignment Method for UAV-View
Geo-Localization". The ViT's patch tokens are ranked by their heat (the mean over channels of
each token), cut in rank order into ``regions`` groups of (nearly) equal size, and each group is
averaged into one region feature. Ranking by heat is what aligns the regions of the two views:
region i of a drone image and region i of its satellite image hold the same "heat level" (the
building first, its surroundings next), so they share classifier i and are pulled together by
the triplet loss. A global feature has a classifier of its own. Every classifier is University-1652's
``ClassBlock`` (512-d bottleneck); the retrieval embedding is the concatenation of the
L2-normalised bottleneck features, regions first and the global feature last, as FSRA's test
script builds it.

Losses (FSRA's training script, also used unchanged by MCCG): per view, the cross-entropy over
locations averaged over the classifiers; plus, per classifier, a batch-hard triplet loss with
margin 0.3 between the two views (each query's hardest satellite positive and negative, and vice
versa) on L2-normalised bottleneck features, averaged over the classifiers; total = CE(query) +
CE(satellite) + triplet.

Deviation, with and without CVD: the global feature is the mean of the (content) patch tokens, not
the class token. With CVD on, the head runs on the content map zc, which is a patch grid without
a class token; using the token mean in the baseline as well keeps the CVD switch from changing
anything else in the recipe (FSRA's own code carries the token mean as its alternative global
feature). See docs/baselines/fsra.md.

The backbone FSRA trained from is timm's 2020 ``vit_small_patch16_224`` (768-d, 8 blocks, 8 heads,
MLP ratio 3, no qkv bias, attention scale 768**-0.5), whose weights timm no longer ships under
that name; :func:`convert_vit_small_v01_weights` turns that file into one today's timm ViT loads
exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cvd.baselines.base import LossContext, Recipe, register_recipe
from cvd.baselines.blocks import ClassBlock, concatenate_normalised, require_num_classes
from cvd.errors import ConfigError, WeightsError
from cvd.losses import batch_hard_triplet, classification_loss
from cvd.models.heads import Head, register_head
from cvd.schema import Option, label_smoothing_option


def location_class_block(in_features: int, num_classes: int, bottleneck: int, dropout: float) -> ClassBlock:
    """University-1652's ClassBlock with the BatchNorm weight started at exactly 1, as FSRA and MCCG
    initialise it (the shared block draws it from N(1, 0.02))."""
    block = ClassBlock(in_features, num_classes, bottleneck=bottleneck, dropout=dropout)
    nn.init.ones_(block.bottleneck[1].weight)
    return block


def heat_ranked_regions(tokens: torch.Tensor, regions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FSRA's feature segmentation of tokens (B, N, C) -> (region features (B, regions, C),
    region of each token (B, N)).

    Tokens are sorted by heat (channel mean), hottest first, and cut into groups of
    floor(N / regions) tokens, the last group taking the remainder; each group is averaged.
    """
    batch, count, _ = tokens.shape
    if not 1 <= regions <= count:
        raise ConfigError(
            f"model.head.kwargs.regions: cannot cut a map of {count} positions into {regions} regions "
            f"(images too small for the backbone's stride?)"
        )
    heat = tokens.mean(dim=-1)
    order = heat.argsort(dim=1, descending=True)
    ranked = tokens.gather(1, order.unsqueeze(-1).expand_as(tokens))
    size = count // regions
    sizes = [size] * (regions - 1) + [count - size * (regions - 1)]
    features = torch.stack([group.mean(dim=1) for group in ranked.split(sizes, dim=1)], dim=1)
    # The token at rank r falls in region min(r // size, regions - 1).
    rank_region = (torch.arange(count, device=tokens.device) // size).clamp(max=regions - 1)
    region_of_token = torch.empty_like(order).scatter_(1, order, rank_region.expand(batch, -1))
    return features, region_of_token


@register_head("fsra")
class FSRAHead(Head):
    """Heat-ranked regions + global token mean, one ClassBlock each (see the module docstring).

    Output: ``embedding`` (B, bottleneck * (regions + 1)), ``features`` (the bottleneck features,
    regions then global), ``region_map`` (B, h, w) with the region of every position, and in
    training mode ``logits`` (one (B, num_classes) tensor per classifier, same order).
    """

    option_declarations: ClassVar[dict[str, Option]] = {
        "regions": Option("int", "number of heat-map regions", low=1),
    }

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None = None,
        regions: int = 3,
        bottleneck: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        num_classes = require_num_classes(num_classes, "fsra")
        if not isinstance(regions, int) or regions < 1:
            raise ConfigError(f"model.head.kwargs.regions: must be a positive integer, got {regions!r}")
        self.regions = regions
        self.num_classes = num_classes
        self.region_blocks = nn.ModuleList(
            location_class_block(in_channels, num_classes, bottleneck, dropout) for _ in range(regions)
        )
        self.global_block = location_class_block(in_channels, num_classes, bottleneck, dropout)
        self.embedding_dim = bottleneck * (regions + 1)

    def forward(self, feature_map: torch.Tensor) -> dict[str, Any]:
        batch, _, height, width = feature_map.shape
        tokens = feature_map.flatten(2).transpose(1, 2)
        region_features, region_of_token = heat_ranked_regions(tokens, self.regions)
        inputs = [*region_features.unbind(dim=1), tokens.mean(dim=1)]
        blocks = [*self.region_blocks, self.global_block]
        outputs = [block(x) for block, x in zip(blocks, inputs)]
        features = [feature for feature, _ in outputs]
        result: dict[str, Any] = {
            "embedding": concatenate_normalised(features),
            "features": features,
            "region_map": region_of_token.reshape(batch, height, width),
        }
        if self.training:
            result["logits"] = [logits for _, logits in outputs]
        return result


class ClassificationTripletLoss(nn.Module):
    """FSRA's (and MCCG's) loss: per-view CE averaged over classifiers + cross-view triplet.

    ``forward(outputs, batch, context)`` reads each branch's ``head`` outputs ``logits`` and
    ``features`` (lists in the same classifier order). The triplet sees the global batch (its
    negatives span all ranks); the cross-entropy is per image, so DDP's gradient averaging already
    makes it the global mean.
    """

    def __init__(
        self, margin: float = 0.3, triplet_weight: float = 1.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.margin = margin
        self.triplet_weight = triplet_weight
        self.label_smoothing = label_smoothing

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        query, satellite = outputs["query"]["head"], outputs["satellite"]["head"]
        terms = {
            f"ce_{branch}": classification_loss(
                head["logits"], labels, label_smoothing=self.label_smoothing, reduction="mean"
            )
            for branch, head in (("query", query), ("satellite", satellite))
        }
        total = terms["ce_query"] + terms["ce_satellite"]
        if self.triplet_weight > 0:
            all_labels = context.gather(labels)
            per_classifier = [
                cross_view_triplet(context.gather(q), context.gather(s), all_labels, self.margin)
                for q, s in zip(query["features"], satellite["features"])
            ]
            terms["triplet"] = torch.stack(per_classifier).mean()
            total = total + self.triplet_weight * terms["triplet"]
        terms["total"] = total
        return terms


def cross_view_triplet(
    query: torch.Tensor, satellite: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    """Batch-hard triplet with anchors of one view and positives/negatives of the other, both ways,
    averaged over all anchors, on L2-normalised features (FSRA's ``Tripletloss`` on the
    concatenation [satellite; query])."""
    query, satellite = F.normalize(query.float(), dim=-1), F.normalize(satellite.float(), dim=-1)
    forward = batch_hard_triplet(query, labels, margin, ref_emb=satellite, ref_labels=labels)
    backward = batch_hard_triplet(satellite, labels, margin, ref_emb=query, ref_labels=labels)
    return 0.5 * (forward + backward)


class ClassificationRecipe(Recipe):
    """What FSRA and MCCG share: their head needs the number of locations, their loss is
    :class:`ClassificationTripletLoss`, and their sampler puts one pair per location in a batch."""

    contrastive = False
    default_sampler = "location_shuffle"
    loss_schema: ClassVar[Mapping[str, Option] | None] = {
        "triplet_margin": Option("float", "margin of the triplet loss", default=0.3, low=0, nullable=False),
        "triplet_weight": Option("float", "weight of the triplet loss", default=1.0, low=0, nullable=False),
        "label_smoothing": label_smoothing_option(0.0),
    }

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        options = self.loss_options
        known = set(self.loss_schema)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"loss: unknown option(s) {unknown} for {self.name}; known: {sorted(known)}")
        return ClassificationTripletLoss(
            margin=float(options["triplet_margin"]),
            triplet_weight=float(options["triplet_weight"]),
            label_smoothing=float(options["label_smoothing"]),
        )


@register_recipe
class FSRA(ClassificationRecipe):
    name = "fsra"


# --------------------------------------------------------------------------------------- weights
VIT_SMALL_V01 = {"embed_dim": 768, "depth": 8, "num_heads": 8, "mlp_ratio": 3.0, "qkv_bias": False}
"""timm 0.3's ``vit_small_patch16_224`` (FSRA's backbone), as today's timm ViT keyword arguments."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def convert_vit_small_v01_weights(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    model_name: str = "vit_small_patch16_224",
    embed_dim: int = VIT_SMALL_V01["embed_dim"],
    num_heads: int = VIT_SMALL_V01["num_heads"],
    source_mean: Sequence[float] = IMAGENET_MEAN,
    source_std: Sequence[float] = IMAGENET_STD,
) -> Path:
    """Write FSRA's ViT-S weights (``vit_small_p16_224-15ec54c9.pth``) as a safetensors file with
    which today's timm ``model_name`` built with :data:`VIT_SMALL_V01` computes the same function.

    Two things changed since that model was trained, and both are folded into the weights exactly
    (so nothing in the model code has to know about them):

    - it scaled attention logits by embed_dim**-0.5 (768**-0.5) where timm now uses
      head_dim**-0.5 (96**-0.5): the query projection is multiplied by sqrt(head_dim / embed_dim);
    - it was trained on inputs normalised with ImageNet's mean and std, while timm's config for
      ``model_name`` (which sets our preprocessing) normalises with its own (0.5, 0.5): the patch
      embedding, a linear map without padding, is rescaled per input channel and its bias shifted.

    Every other key already has today's name and shape.
    """
    import timm
    from safetensors.torch import save_file

    from cvd.models.backbones import read_weights_file

    state = dict(read_weights_file(source))
    factor = math.sqrt((embed_dim // num_heads) / embed_dim)
    converted = 0
    for key in list(state):
        if key.endswith("attn.qkv.weight") or key.endswith("attn.qkv.bias"):
            tensor = state[key].clone()
            if tensor.shape[0] != 3 * embed_dim:
                raise WeightsError(f"{source}: {key} has {tensor.shape[0]} rows, expected 3 x {embed_dim}")
            tensor[:embed_dim] *= factor
            state[key] = tensor
            converted += 1
    if not converted:
        raise WeightsError(f"{source}: no attention weights (*.attn.qkv.weight) found; is it a ViT?")

    config = timm.models.get_pretrained_cfg(model_name)
    if config is None:
        raise ConfigError(f"model_name: timm has no pretrained config for {model_name!r}")
    weight_key, bias_key = "patch_embed.proj.weight", "patch_embed.proj.bias"
    if weight_key not in state:
        raise WeightsError(f"{source}: no patch embedding ({weight_key}) found")
    weight = state[weight_key].double()
    old_mean, old_std = torch.tensor(source_mean).double(), torch.tensor(source_std).double()
    new_mean, new_std = torch.tensor(config.mean).double(), torch.tensor(config.std).double()
    # x_old = (x - m_old) / s_old = (s_new / s_old) * x_new + (m_new - m_old) / s_old
    shift = (weight * ((new_mean - old_mean) / old_std).view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    bias = state.get(bias_key, torch.zeros(weight.shape[0])).double() + shift
    state[weight_key] = (weight * (new_std / old_std).view(1, -1, 1, 1)).to(state[weight_key].dtype)
    state[bias_key] = bias.to(state[weight_key].dtype)

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target
