"""What the part-based baselines share: LPN, and SDPL and MBF that build on it.

A part head cuts the feature map into parts (rings, bands, shifted squares), pools each and gives
every part its own classifier block; the model (:class:`PartModel`) keeps one head for both
branches and tells it which branch it runs, since the classifiers are what ties the two views'
feature spaces together even where the encoders are separate. Here: the per-part classifiers,
the head base, the model and its embedder, the per-part cross-entropy loss, the recipe base and
LPN's ResNet last-stride change. Each method's own head lives in its module (`lpn`, `sdpl`,
`mbf`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cvd.baselines.base import LossContext, Recipe
from cvd.baselines.blocks import ClassBlock, concatenate_normalised, require_num_classes
from cvd.errors import ConfigError
from cvd.losses import classification_loss
from cvd.models.backbones import Backbone
from cvd.models.cvd import BRANCHES, CVD, BranchContent
from cvd.models.heads import Head
from cvd.models.model import RetrievalModel, branch_of, constraint_factors, resolve_cvd_config
from cvd.schema import Option, label_smoothing_option


class PartClassifiers(nn.Module):
    """One University-1652 classifier block per part; parts (B, C, P) -> features and logits."""

    def __init__(
        self, in_features: int, parts: int, num_classes: int, bottleneck: int = 512, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ClassBlock(in_features, num_classes, bottleneck=bottleneck, dropout=dropout) for _ in range(parts)
        )

    def forward(self, parts: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outputs = [block(parts[:, :, index]) for index, block in enumerate(self.blocks)]
        return [feature for feature, _ in outputs], [logits for _, logits in outputs]


class PartHead(Head):
    """Base of the part heads: ``forward(feature_map, branch)`` -> embedding, logits, parts."""

    def forward(self, feature_map: torch.Tensor, branch: str = "query") -> dict[str, Any]:
        raise NotImplementedError

    def forward_projected(
        self, features: torch.Tensor, projection: nn.Module, branch: str = "query"
    ) -> dict[str, Any]:
        """``self(projection(features), branch)``; heads that pool linearly skip the full-map
        projection (CVD's content conv) at inference, with the same result."""
        return self(projection(features), branch=branch)

    @staticmethod
    def outputs(features: list[torch.Tensor], logits: list[torch.Tensor]) -> dict[str, Any]:
        return {
            "embedding": concatenate_normalised(features),
            "logits": logits,
            "parts": torch.stack(features, dim=1),
        }


class PartEmbedder(nn.Module):
    """Images -> L2-normalised (content) embedding of one branch, for inference and export.

    Like ``cvd.models.BranchEmbedder`` (encoder, content conv, head; no viewpoint conv, no
    decoder) but it tells the head which branch it runs, as part heads need, and lets a head that
    pools linearly apply the content conv to its pooled windows (``forward_projected``).
    """

    def __init__(
        self, encoder: nn.Module, content: BranchContent | None, head: nn.Module, branch: str
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.content = content
        self.head = head
        self.branch = branch
        self.training = encoder.training  # inherit the model's mode (see BranchEmbedder)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        if self.content is None:
            output = self.head(features, branch=self.branch)
        else:
            output = self.head.forward_projected(features, self.content, branch=self.branch)
        return F.normalize(output["embedding"], dim=-1)


class PartModel(RetrievalModel):
    """A retrieval model with one head for both branches, called with the branch it runs.

    LPN-style heads share their classifiers between the views even when the encoders are
    separate, and may partition each view differently; one head module (stored once, so the
    state dict has no duplicates) told its branch covers both. Subclasses change how a branch
    computes its feature map by overriding :meth:`encoder`.
    """

    def __init__(
        self,
        backbones: Mapping[str, Backbone],
        head: PartHead,
        cvd: CVD | None = None,
        cvd_config: Mapping[str, Any] | None = None,
    ) -> None:
        nn.Module.__init__(self)
        if set(backbones) not in ({"shared"}, set(BRANCHES)):
            raise ValueError("backbones are keyed 'shared', or 'query' and 'satellite'")
        self.share_weights = set(backbones) == {"shared"}
        self.backbones = nn.ModuleDict(dict(backbones))
        self.heads = nn.ModuleDict({"shared": head})
        self.cvd = cvd
        self.cvd_config = resolve_cvd_config(cvd_config) if cvd is not None else None

    def head(self, branch: str = "query") -> nn.Module:
        return self.heads["shared"]

    def encoder(self, branch: str) -> nn.Module:
        """Images -> feature map of ``branch`` (the backbone; MBF adds its status token)."""
        return self.backbone(branch)

    def embedder(self, view: str) -> PartEmbedder:
        branch = branch_of(view)
        content = self.cvd.content_projection(branch) if self.cvd is not None else None
        return PartEmbedder(self.encoder(branch), content, self.head(branch), branch)

    def encode(self, images: torch.Tensor, branch: str) -> dict[str, Any]:
        features = self.encoder(branch)(images)
        zc, zv = self.cvd.split(features, branch) if self.cvd is not None else (features, None)
        head_output = self.head(branch)(zc, branch=branch)
        return {
            "embedding": F.normalize(head_output["embedding"], dim=-1),
            "head": head_output,
            "features": features,
            **constraint_factors(self.cvd, features, branch, zc, zv),
        }


def set_last_stride(backbone: Backbone, stride: int) -> None:
    """Give a ResNet's last stage this stride, as LPN/SDPL do (the strided conv of ``layer4[0]``
    and its shortcut; a ResNet-D shortcut's 2x2 average pool becomes the identity at stride 1).

    Stride 1 doubles the map's side (8x8 -> 16x16 at 256 px) without dilation, like their code,
    rather than timm's ``output_stride=16`` (which dilates the stage).
    """
    if stride not in (1, 2):
        raise ConfigError(f"model.head.kwargs.last_stride: must be 1 or 2 (ResNet's own), got {stride!r}")
    layer = getattr(backbone.model, "layer4", None)
    first = layer[0] if isinstance(layer, nn.Sequential) and len(layer) else None
    strided = [m for m in (first.modules() if first is not None else ()) if _is_strided(m)]
    if not strided:
        raise ConfigError(
            f"model.head.kwargs.last_stride: backbone '{backbone.name}' is not a ResNet whose "
            "layer4 starts with a strided block"
        )
    if stride == 2:
        return
    for module in strided:
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
        else:
            module.kernel_size, module.stride = 1, 1


def _is_strided(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return tuple(module.stride) != (1, 1)
    return isinstance(module, nn.AvgPool2d) and module.stride not in (1, (1, 1))


class PartClassificationLoss(nn.Module):
    """LPN's instance loss: per view, the cross-entropies of every part classifier, summed."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        terms = {
            f"ce_{branch}": classification_loss(
                outputs[branch]["head"]["logits"], labels, self.label_smoothing, reduction="sum"
            )
            for branch in BRANCHES
        }
        terms["total"] = terms["ce_query"] + terms["ce_satellite"]
        return terms


class PartRecipe(Recipe):
    """What LPN, SDPL and MBF share: a :class:`PartModel` whose head gets the number of locations,
    an optional ResNet last stride, and options checked by name."""

    contrastive = False
    default_sampler = "location_shuffle"
    loss_schema: ClassVar[Mapping[str, Option] | None] = {"label_smoothing": label_smoothing_option(0.0)}
    model_keys: ClassVar[frozenset[str]] = frozenset({"last_stride"})  # head kwargs this recipe consumes

    @property
    def loss_keys(self) -> frozenset[str]:
        """The declared ``loss:`` option names."""
        return frozenset(self.loss_schema or {})

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """Backbone(s), CVD and the head as ``build_retrieval_model`` makes them, regrouped into a
        :class:`PartModel` (one head); ``model.num_classes`` is passed to the head."""
        from cvd.models.model import build_retrieval_model

        built = copy.deepcopy(dict(config))
        head = built["model"].setdefault("head", {})
        kwargs = dict(head.get("kwargs") or {})
        options = {key: kwargs.pop(key) for key in self.model_keys if key in kwargs}
        kwargs["num_classes"] = require_num_classes(
            kwargs.get("num_classes", built["model"].get("num_classes")), str(head.get("name"))
        )
        head["kwargs"] = kwargs
        plain = build_retrieval_model(built)
        model = self.make_model(plain, options, built)
        stride = options.get("last_stride")
        if stride is not None:
            for backbone in model.backbones.values():
                set_last_stride(backbone, int(stride))
        return model

    def make_model(
        self, plain: RetrievalModel, options: Mapping[str, Any], config: Mapping[str, Any]
    ) -> PartModel:
        """The :class:`PartModel` from the plain build (one of its heads; the other is dropped)."""
        head = next(iter(plain.heads.values()))
        backbones = dict(plain.backbones.items())
        return PartModel(backbones, head, plain.cvd, plain.cvd_config)

    def check_loss_options(self) -> Mapping[str, Any]:
        unknown = sorted(set(self.loss_options) - set(self.loss_keys))
        if unknown:
            raise ConfigError(
                f"loss: unknown option(s) {unknown} for {self.name}; known: {sorted(self.loss_keys)}"
            )
        return self.loss_options

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        options = self.check_loss_options()
        return PartClassificationLoss(label_smoothing=float(options["label_smoothing"]))
