"""The retrieval model: backbone -> (CVD split) -> head, per branch, built from the config.

Datasets name views ("drone", "street", "satellite"); the model has two branches ("query",
"satellite"). Training calls `model(query=..., satellite=...)` and gets everything the losses
need; inference calls `embed(images, view)` or exports `embedder(view)`, which hold neither the
viewpoint conv nor the decoders.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvd.config import apply_cvd_variant, packaged_config_path, read_yaml
from cvd.errors import ConfigError
from cvd.models.backbones import Backbone
from cvd.models.cvd import (
    BRANCHES,
    CVD,
    BranchContent,
    reconstruction_size,
)
from cvd.models.heads import HEADS, build_head
from cvd.schema import OPTIONS, check_value


def _cvd_defaults() -> dict[str, Any]:
    """The ``cvd`` keys default.yaml sets: their one default (cvd_variants.yaml sets the nulls)."""
    section = read_yaml(packaged_config_path()).get("cvd") or {}
    return {key: value for key, value in section.items() if value is not None}


# Defaults of the keys no variant sets, read from default.yaml (never written twice).
CVD_DEFAULTS: dict[str, Any] = _cvd_defaults()


def branch_of(view: str) -> str:
    """Every view except "satellite" ("drone", "street", "query") goes through the query branch."""
    return "satellite" if view == "satellite" else "query"


def resolve_cvd_config(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `cvd` section with defaults and the variant's values filled in, the model's values checked.

    Keys this module does not read (e.g. the engine's `loc`) are kept as they are: the config
    system, not the model builder, owns the list of allowed keys.
    """
    section = {key: value for key, value in dict(section or {}).items() if value is not None}
    resolved = apply_cvd_variant({**copy.deepcopy(CVD_DEFAULTS), **section})
    for key, value in resolved.items():  # type, range, choices: as declared in cvd.schema
        option = OPTIONS.get(f"cvd.{key}")
        if option is not None:
            check_value(f"cvd.{key}", value, option)
    resolved["lambda"] = [float(value) for value in resolved["lambda"]]
    # what depends on another key
    if resolved["init"] == "rotation" and resolved["split"] != "conv":
        raise ConfigError("cvd.init: 'rotation' applies to cvd.split=conv only")
    if resolved["decoder_channels"] == 0 and resolved["recon_target"] != "pooled_feature":
        raise ConfigError(
            "cvd.decoder_channels: 0 (an affine decoder) applies to cvd.recon_target=pooled_feature only; "
            "give an integer >= 1"
        )
    if resolved["retrieval_trains_split"] is False and resolved["split"] != "complement":
        raise ConfigError("cvd.retrieval_trains_split: false applies to cvd.split=complement only")
    return resolved


class BranchEmbedder(nn.Module):
    """Images -> L2-normalised content embedding of one branch; the unit that gets exported.

    Holds the backbone, the content conv (when CVD is on) and the head, shared with the model
    (not copied); no viewpoint conv, no decoder. With a global-mean head the content conv is
    evaluated on pooled windows (exactly equal, much cheaper; see SplitProjection.global_mean).
    """

    def __init__(self, backbone: Backbone, content: BranchContent | None, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.content = content
        self.head = head
        self.pooled_content = content is not None and getattr(head, "pools_by_global_mean", False)
        # Inherit the model's mode (flag only): exporters restore the wrapper's mode recursively
        # afterwards, which would otherwise flip the shared model into training mode.
        self.training = backbone.training

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.pooled_content:
            output = self.head.forward_pooled(self.content.global_mean(features))
        else:
            output = self.head(self.content(features) if self.content is not None else features)
        return F.normalize(output["embedding"], dim=-1)


class RetrievalModel(nn.Module):
    """Two-branch retrieval model with an optional CVD module between backbone and head."""

    def __init__(
        self,
        backbones: Mapping[str, Backbone],
        heads: Mapping[str, nn.Module],
        cvd: CVD | None = None,
        cvd_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if set(backbones) != set(heads) or set(backbones) not in ({"shared"}, set(BRANCHES)):
            raise ValueError("backbones and heads are keyed 'shared', or 'query' and 'satellite'")
        self.share_weights = set(backbones) == {"shared"}
        self.backbones = nn.ModuleDict(dict(backbones))
        self.heads = nn.ModuleDict(dict(heads))
        self.cvd = cvd
        self.cvd_config = resolve_cvd_config(cvd_config) if cvd is not None else None

    def _key(self, branch: str) -> str:
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got '{branch}'")
        return "shared" if self.share_weights else branch

    def backbone(self, branch: str = "query") -> Backbone:
        return self.backbones[self._key(branch)]

    def head(self, branch: str = "query") -> nn.Module:
        return self.heads[self._key(branch)]

    @property
    def data_config(self) -> dict[str, Any]:
        """Preprocessing (mean, std, interpolation, size) of the query branch's backbone."""
        return self.backbone("query").data_config

    @property
    def embedding_dim(self) -> int:
        return int(self.head("query").embedding_dim)

    @property
    def reconstructs(self) -> bool:
        return self.cvd is not None and self.cvd.decoders is not None

    def embedder(self, view: str) -> BranchEmbedder:
        """Standalone images -> embedding module of `view`'s branch (for inference and ONNX export)."""
        branch = branch_of(view)
        content = self.cvd.content_projection(branch) if self.cvd is not None else None
        return BranchEmbedder(self.backbone(branch), content, self.head(branch))

    def embed(self, images: torch.Tensor, view: str) -> torch.Tensor:
        """L2-normalised retrieval embeddings (B, D): content only when CVD is on."""
        return self.embedder(view)(images)

    def encode(self, images: torch.Tensor, branch: str) -> dict[str, Any]:
        """Training-time pass of one branch: feature map, split, head, normalised embedding."""
        features = self.backbone(branch)(images)
        zc, zv = self.cvd.split(features, branch) if self.cvd is not None else (features, None)
        head_output = self.head(branch)(zc)
        return {
            "embedding": F.normalize(head_output["embedding"], dim=-1),
            "head": head_output,
            "features": features,
            **constraint_factors(self.cvd, features, branch, zc, zv),
        }

    def forward(
        self, query: torch.Tensor | None = None, satellite: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Outputs of the given views; with both views and reconstruction on, also eq. 4's images
        and their targets (the inputs resized to the reconstruction size)."""
        outputs: dict[str, Any] = {}
        images = {"query": query, "satellite": satellite}
        for branch, batch in images.items():
            if batch is not None:
                outputs[branch] = self.encode(batch, branch)
        if self.reconstructs and query is not None and satellite is not None:
            reconstruction, target = {}, {}
            for branch, other in (("query", "satellite"), ("satellite", "query")):
                target[branch] = reconstruction_target(self.cvd, images[branch], outputs[branch], branch)
                reconstruction[branch] = self.cvd.reconstruct(
                    outputs[other]["zc"], outputs[branch]["zv"], branch, tuple(target[branch].shape[-2:])
                )
            outputs["reconstruction"] = reconstruction
            outputs["reconstruction_target"] = target
        return outputs

    def parameter_parts(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part, for per-part learning rates (LPN/MCCG train the backbone slower)."""
        parts = {
            "backbone": list(self.backbones.parameters()),
            "head": list(self.heads.parameters()),
            "cvd": list(self.cvd.parameters()) if self.cvd is not None else [],
        }
        return parts


def constraint_factors(
    cvd: CVD | None, features: torch.Tensor, branch: str, zc: torch.Tensor, zv: torch.Tensor | None
) -> dict[str, torch.Tensor | None]:
    """The "zc" / "zv" the CVD losses see: the retrieval split's own, or a second split of the
    map, of the detached map with ``cvd.detach_backbone`` (the constraints' gradients then stop
    at the CVD module) and centred as at inference with ``cvd.centre: inference`` (retrieval
    trains on the uncentred map, the constraints and decoders work where inference does)."""
    if cvd is None or not (cvd.detach_backbone or cvd.centre_mode == "inference"):
        return {"zc": zc, "zv": zv}
    source = features.detach() if cvd.detach_backbone else features
    zc_constraints, zv_constraints = cvd.split(source, branch, for_retrieval=False)
    return {"zc": zc_constraints, "zv": zv_constraints}


def reconstruction_target(
    cvd: CVD, images: torch.Tensor, branch_outputs: Mapping[str, Any], branch: str = "query"
) -> torch.Tensor:
    """What D^u rebuilds for one branch, never a source of gradient: the images resized to the
    reconstruction size (paper), the branch's own backbone map (``feature``) or its pooled vector
    (``pooled_feature``), both with the view mean removed when CVD centres (so that predicting the
    mean is predicting 0, where an affine decoder starts)."""
    if cvd.reconstruct_kind in ("feature", "pooled_feature"):
        features = branch_outputs["features"].detach()
        if cvd.centre:
            with torch.no_grad():
                features = cvd.centred(features, branch, for_retrieval=False)
        return features if cvd.reconstruct_kind == "feature" else features.mean(dim=(2, 3))
    size = reconstruction_size(tuple(images.shape[-2:]), cvd.recon_size)
    return F.interpolate(images.detach(), size=size, mode="bilinear", antialias=True, align_corners=False)


def _section(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}{key}: missing or not a mapping")
    return value


def _head_kwargs(head_name: str, kwargs: dict[str, Any], num_classes: Any) -> dict[str, Any]:
    """Pass ``model.num_classes`` (set by the engine from the training set) to heads that take it."""
    if num_classes is None or "num_classes" in kwargs:
        return kwargs
    factory = HEADS.get(head_name)
    parameters = inspect.signature(factory).parameters if factory is not None else {}
    if "num_classes" in parameters:
        kwargs = {**kwargs, "num_classes": int(num_classes)}
    return kwargs


def build_retrieval_model(config: Mapping[str, Any]) -> RetrievalModel:
    """Build backbone (+ CVD) + head per the `model` and `cvd` sections of the full config."""
    model_config = _section(config, "model", "")
    backbone_config = _section(model_config, "backbone", "model.")
    name = backbone_config.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("model.backbone.name: missing; give a timm model name, e.g. tf_efficientnet_lite0")
    pretrained = backbone_config.get("pretrained", False)
    backbone_kwargs = dict(backbone_config.get("kwargs") or {})
    head_config = model_config.get("head") or {"name": "gap"}
    head_name = head_config.get("name", "gap")
    head_kwargs = _head_kwargs(
        head_name, dict(head_config.get("kwargs") or {}), model_config.get("num_classes")
    )
    share_weights = model_config.get("share_weights", True)
    if not isinstance(share_weights, bool):
        raise ConfigError(f"model.share_weights: must be true or false, got {share_weights!r}")
    cvd_config = resolve_cvd_config(config.get("cvd"))

    keys = ("shared",) if share_weights else BRANCHES
    backbones = {key: Backbone(name, pretrained=pretrained, **backbone_kwargs) for key in keys}
    in_channels = backbones[keys[0]].out_channels
    cvd = None
    if cvd_config["enabled"]:
        cvd = build_cvd(in_channels, cvd_config, share_weights)
        in_channels = cvd.content_channels
    heads = {key: build_head(head_name, in_channels, **head_kwargs) for key in keys}
    for head in heads.values():
        if not isinstance(getattr(head, "embedding_dim", None), int):
            raise ConfigError(f"model.head.name: head '{head_name}' does not expose an integer embedding_dim")
    return RetrievalModel(backbones, heads, cvd, cvd_config if cvd is not None else None)


def build_cvd(in_channels: int, cvd_config: Mapping[str, Any], share_weights: bool) -> CVD:
    """The CVD module of a resolved ``cvd`` section.

    Its initial weights are drawn from a copy of the random stream, which is then left where it
    was: a CVD run and its baseline twin (same seed) start their heads from the same weights and
    draw the same random numbers in training (dropout, drop-path), so their paired difference is
    CVD's alone and not a different draw of the training noise.
    """
    with torch.random.fork_rng(devices=[]):
        return CVD(
            in_channels,
            alpha=float(cvd_config["alpha"]),
            squeeze=bool(cvd_config["squeeze"]),
            recon_size=cvd_config["recon_size"],
            decoder_channels=cvd_config["decoder_channels"],
            kernel_size=cvd_config["kernel_size"],
            init=cvd_config["init"],
            separate_branches=not share_weights,
            viewpoint=bool(cvd_config["independence"]) or bool(cvd_config["reconstruction"]),
            decoders=bool(cvd_config["reconstruction"]),
            split=cvd_config["split"],
            viewpoint_channels=cvd_config["viewpoint_channels"],
            reconstruct=cvd_config["recon_target"],
            centre=cvd_config["centre"],
            retrieval_trains_split=bool(cvd_config["retrieval_trains_split"]),
            detach_backbone=bool(cvd_config["detach_backbone"]),
            decoder_zero_init=cvd_config["decoder_init"] == "zero",
        )
