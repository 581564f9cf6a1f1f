"""MBF (Zhu et al., Sensors 2023, "UAV's Status Is Worth Considering: A Fusion Representations
Matching Method for Geo-Localization"): a hybrid ViT with LPN blocks and the UAV's status.

From the paper and its reference code (``Reza-Zhu/MBF``, ``MBF-SUES``):

- encoder: the hybrid ViT ``vit_base_r50_s16_384`` (ResNet-50 stem, ViT-B/16, 24x24 tokens at
  384 px); a sentence describing the UAV's status ("The altitude of the drone is 150 meters, the
  angle of camera is 45 degree"; satellites: "The altitude of the satellite is 1000
  kilometers"), embedded by BERT (mean of the last layer, 768-d), is appended to the token
  sequence so that the transformer attends to it;
- three branches, each with a classifier over the training locations: the global feature;
  hierarchical bilinear pooling (HBP) of token maps from different depths (1x1 projection to
  1024 channels, a shared 1x1 conv to 2048 + BatchNorm + ReLU, elementwise products summed over
  positions, signed square root, L2); LPN on the projected token map (``blocks`` = 2 square
  rings, max-pooled);
- loss: the cross-entropies of every classifier of both views, plus a triplet loss with margin
  0.3 on the concatenated normalised features.

As implemented here (the head must work on CVD's content map, which is only the final map; see
docs/baselines/mbf.md): the global feature is the mean of the (content) token map; HBP pairs
the projected map with the projection of its refinement by one extra transformer block (MBF
adds one such block for its deepest level), one bilinear pair instead of MBF's three (its other
levels, the CNN stem and the penultimate tokens, are not content features); the triplet loss is
batch-hard over both views of the (gathered) batch, as FSRA/MCCG compute it.

The status text is optional and offline-safe: the recipe never runs BERT. Give a precomputed
file (``model.head.kwargs.status_embeddings``: a safetensors file with 1-D tensors ``query`` and
``satellite`` of the encoder's width; :func:`save_status_embeddings` writes one). Without it the
model is MBF's image-only variant, and the log says so.

CVD: the status token is fused in the encoder, before the split; the head runs on zc; the
classification + triplet loss is kept and an InfoNCE on the content embeddings is added as L_loc.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cvd.baselines.base import LossContext, register_recipe
from cvd.baselines.blocks import ClassBlock, require_num_classes
from cvd.baselines.partition import masked_pool, resize_for_rings, square_rings
from cvd.baselines.parts import (
    PartClassificationLoss,
    PartClassifiers,
    PartHead,
    PartModel,
    PartRecipe,
)
from cvd.errors import ConfigError
from cvd.losses import batch_hard_triplet
from cvd.models.backbones import Backbone
from cvd.models.cvd import BRANCHES
from cvd.models.heads import register_head
from cvd.models.model import RetrievalModel
from cvd.schema import Option, label_smoothing_option

LOGGER = logging.getLogger("cvd")

STATUS_KEYS = BRANCHES  # ("query", "satellite")


def save_status_embeddings(
    path: str | os.PathLike[str], query: torch.Tensor, satellite: torch.Tensor
) -> Path:
    """Write the two status embeddings (e.g. BERT sentence vectors) in the file format MBF reads."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "query": query.detach().float().reshape(-1),
        "satellite": satellite.detach().float().reshape(-1),
    }
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(path))
    return path


def load_status_embeddings(path: str | os.PathLike[str], width: int) -> torch.Tensor:
    """(2, width) status tokens (query, satellite) from ``path``; errors name the file and field."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    field = "model.head.kwargs.status_embeddings"
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"{field}: cannot read {path} as a safetensors file: {error}") from error
    missing = [key for key in STATUS_KEYS if key not in tensors]
    if missing:
        raise ConfigError(f"{field}: {path} lacks tensor(s) {missing}; it has {sorted(tensors)}")
    rows = []
    for key in STATUS_KEYS:
        vector = tensors[key].float().reshape(-1)
        if vector.numel() != width:
            raise ConfigError(
                f"{field}: {path}[{key!r}] has {vector.numel()} values; the encoder's tokens have {width}"
            )
        rows.append(vector)
    return torch.stack(rows)


class StatusTokens(nn.Module):
    """The status embedding of each branch (row 0 query, row 1 satellite), saved with the weights."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("tokens", torch.zeros(len(STATUS_KEYS), width))

    def forward(self, branch: str) -> torch.Tensor:
        return self.tokens[STATUS_KEYS.index(branch)]


def vit_map_with_token(backbone: Backbone, images: torch.Tensor, token: torch.Tensor | None) -> torch.Tensor:
    """A timm ViT's final token map (B, C, h, w) with ``token`` (C,) appended to its input sequence.

    The steps of timm's ``forward_features`` (patch embedding, class token and position
    embedding, pre-norm, blocks, final norm), with one more token attended to by every block;
    prefix and appended tokens are dropped from the output. ``token=None`` gives exactly the
    backbone's own feature map.
    """
    vit = backbone.model
    if not callable(getattr(vit, "_pos_embed", None)) or getattr(vit, "rope", None) is not None:
        raise ConfigError(
            f"model.head.kwargs.status_embeddings: backbone '{backbone.name}' is not a plain timm "
            "ViT (with absolute position embeddings) into which a status token can be fused"
        )
    tokens = vit.patch_embed(images)
    # (B, h, w, C) with dynamic image size; a fixed-size ViT only runs at its own grid
    grid = tuple(tokens.shape[1:3]) if tokens.ndim == 4 else tuple(vit.patch_embed.grid_size)
    tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(tokens)))
    extra = 0
    if token is not None:
        tokens = torch.cat([tokens, token.to(tokens.dtype).expand(tokens.shape[0], 1, -1)], dim=1)
        extra = 1
    tokens = vit.norm(vit.blocks(tokens))
    patches = tokens[:, vit.num_prefix_tokens : tokens.shape[1] - extra]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], *grid)


class StatusFusedEncoder(nn.Module):
    """Images -> token map of one branch, with that branch's status token in the sequence."""

    def __init__(self, backbone: Backbone, status: StatusTokens, branch: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.status = status
        self.branch = branch
        self.training = backbone.training

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return vit_map_with_token(self.backbone, images, self.status(self.branch))


class MBFModel(PartModel):
    """:class:`PartModel` whose encoders fuse the branch's status token when one is given."""

    def __init__(self, *args: Any, status: StatusTokens | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status = status

    def encoder(self, branch: str) -> nn.Module:
        if self.status is None:
            return self.backbone(branch)
        return StatusFusedEncoder(self.backbone(branch), self.status, branch)


def bilinear_pool(first: torch.Tensor, second: torch.Tensor, project: nn.Module) -> torch.Tensor:
    """HBP of two maps (B, C, h, w): project both, multiply, sum over positions, sqrt, L2."""
    product = (project(first) * project(second)).flatten(2).sum(dim=-1)
    return F.normalize(torch.sqrt(product + 1e-5), dim=-1)


@register_head("mbf")
class MBFHead(PartHead):
    """Global, hierarchical-bilinear and LPN-ring branches, a classifier block each."""

    option_declarations: ClassVar[dict[str, Option]] = {
        "proj_channels": Option("int", "projection width of the bilinear branch", low=1),
        "hbp_channels": Option("int", "width of the hierarchical bilinear pooling", low=1),
        "num_heads": Option("int", "attention heads of the fusion block", low=1),
    }

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None = None,
        blocks: int = 2,
        bottleneck: int = 512,
        dropout: float = 0.35,
        proj_channels: int = 1024,
        hbp_channels: int = 2048,
        num_heads: int = 12,
    ) -> None:
        super().__init__()
        num_classes = require_num_classes(num_classes, "mbf")
        if in_channels % int(num_heads):
            raise ConfigError(
                f"model.head.kwargs.num_heads: {num_heads} does not divide the head's input width "
                f"{in_channels} (the extra transformer block splits it into heads)"
            )
        self.blocks = int(blocks)
        self.refine = _transformer_block(in_channels, int(num_heads))
        self.project = nn.Conv2d(in_channels, int(proj_channels), kernel_size=1)
        self.bilinear = nn.Sequential(
            nn.Conv2d(int(proj_channels), int(hbp_channels), kernel_size=1, bias=False),
            nn.BatchNorm2d(int(hbp_channels)),
            nn.ReLU(),
        )
        nn.init.xavier_normal_(self.bilinear[0].weight)
        self.global_classifier = ClassBlock(in_channels, num_classes, bottleneck=bottleneck, dropout=dropout)
        self.hbp_classifier = ClassBlock(
            int(hbp_channels), num_classes, bottleneck=bottleneck, dropout=dropout
        )
        self.ring_classifiers = PartClassifiers(
            int(proj_channels), self.blocks, num_classes, bottleneck, dropout
        )
        self.embedding_dim = (2 + self.blocks) * int(bottleneck)

    def forward(self, feature_map: torch.Tensor, branch: str = "query") -> dict[str, Any]:
        batch, channels, height, width = feature_map.shape
        tokens = feature_map.flatten(2).transpose(1, 2)
        refined = self.refine(tokens).transpose(1, 2).reshape(batch, channels, height, width)
        projected = self.project(feature_map)
        hbp = bilinear_pool(projected, self.project(refined), self.bilinear)
        global_feature, global_logits = self.global_classifier(feature_map.mean(dim=(2, 3)))
        hbp_feature, hbp_logits = self.hbp_classifier(hbp)
        rings_map = resize_for_rings(projected, self.blocks)
        rings = masked_pool(
            rings_map, square_rings(rings_map.shape[-2], rings_map.shape[-1], self.blocks), "max"
        )
        ring_features, ring_logits = self.ring_classifiers(rings)
        return self.outputs(
            [global_feature, hbp_feature, *ring_features], [global_logits, hbp_logits, *ring_logits]
        )


def _transformer_block(width: int, heads: int) -> nn.Module:
    from timm.models.vision_transformer import Block

    return Block(width, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))


class MBFLoss(PartClassificationLoss):
    """Every classifier's cross-entropy (both views, summed) + batch-hard triplet over both views."""

    def __init__(
        self, margin: float = 0.3, triplet_weight: float = 1.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__(label_smoothing)
        self.margin = margin
        self.triplet_weight = triplet_weight

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        terms = super().forward(outputs, batch, context)
        labels = context.gather(batch["label"])
        embeddings = torch.cat([context.gather(outputs[branch]["embedding"]) for branch in BRANCHES])
        terms["triplet"] = batch_hard_triplet(embeddings, torch.cat([labels, labels]), margin=self.margin)
        terms["total"] = terms["total"] + self.triplet_weight * terms["triplet"]
        return terms


@register_recipe
class MBF(PartRecipe):
    name = "mbf"
    loss_schema: ClassVar[Mapping[str, Option] | None] = {
        "label_smoothing": label_smoothing_option(0.0),
        "triplet_margin": Option("float", "margin of the triplet loss", default=0.3, low=0, nullable=False),
        "triplet_weight": Option("float", "weight of the triplet loss", default=1.0, low=0, nullable=False),
    }
    model_keys: ClassVar[frozenset[str]] = frozenset({"last_stride", "status_embeddings"})

    def make_model(
        self, plain: RetrievalModel, options: Mapping[str, Any], config: Mapping[str, Any]
    ) -> PartModel:
        path = options.get("status_embeddings")
        status = None
        if path is None:
            LOGGER.info(
                "MBF: image-only variant (no UAV-status text fusion): "
                "model.head.kwargs.status_embeddings is not set"
            )
        else:
            width = plain.backbone("query").out_channels
            status = StatusTokens(width)
            if Path(path).is_file():
                status.tokens.copy_(load_status_embeddings(path, width))
                LOGGER.info("MBF: UAV-status text fusion on, status embeddings from %s", path)
            else:
                LOGGER.warning(
                    "MBF: status embeddings file %s not found; the status tokens start at zero, as when "
                    "rebuilding released weights (which hold them). Training refuses to start without it.",
                    path,
                )
        head = next(iter(plain.heads.values()))
        return MBFModel(dict(plain.backbones.items()), head, plain.cvd, plain.cvd_config, status=status)

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        path = ((config.get("model") or {}).get("head") or {}).get("kwargs", {}).get("status_embeddings")
        if path is not None and not Path(path).is_file():
            raise ConfigError(
                f"model.head.kwargs.status_embeddings: {path} not found; write it with "
                "cvd.baselines.mbf.save_status_embeddings (see docs/baselines/mbf.md) or remove the key "
                "for the image-only variant"
            )
        options = self.check_loss_options()
        return MBFLoss(
            margin=float(options["triplet_margin"]),
            triplet_weight=float(options["triplet_weight"]),
            label_smoothing=float(options["label_smoothing"]),
        )
