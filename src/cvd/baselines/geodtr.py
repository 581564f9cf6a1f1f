"""GeoDTR (Zhang et al., AAAI 2023, "Cross-view geo-localization via learning disentangled
geometric layout correspondence").

Recipe, from the paper and its code: a ResNet-34 per view (separate weights) at output stride 16
on SAFA's polar-transformed satellites and on panoramas, both 122x671 (an 8x42 map of 512
channels); a geometric layout extractor (GLE) turns each map into ``n_des`` (8) layout
descriptors, spatial weightings of the map, and the retrieval vector is the map pooled by each
of them, concatenated (8 x 512 = 4096-d); losses: SAFA's soft-margin triplet (alpha 10) plus the
counterfactual loss (weight 1); layout simulation (shared flip and azimuth shift of both views)
and semantic augmentation (colour jitter, grey, posterise, blur); AdamW 1e-4, weight decay 0.03,
gradient clip 1, 5 warm-up epochs then cosine, 200 epochs, batch 32.

Geometric layout extractor (GeoDTR's GLE), on a map x of C channels and N = h*w positions:
the channel-wise maximum m (N) and the normalised index of that channel p (N) summarise the
layout; ``n_des`` linear maps N -> N/2 of m give one token per descriptor; a transformer
(``layers`` layers, ``heads`` heads, feed-forward ``ffn_dim``, GELU, dropout, final LayerNorm)
mixes the tokens after adding an index-aware positional embedding (a learned linear function of
p plus a learned offset, hard-tanh); ``n_des`` linear maps N/2 -> N bring each token back to a
spatial weighting, hard-tanh'ed into [-1, 1]: the descriptors P (N, n_des). The embedding is
x P (C, n_des), flattened.

Counterfactual loss: the same pooling with random descriptors U(-1, 1) gives a counterfactual
vector v'; ``log(1 + exp(5 * (2 cos(v, v') - 2)))`` averaged over images and the two views
pushes the learned layout's effect away from a random one's.

With CVD on, the GLE runs on the content map zc (C = 256 content channels, so 2048-d vectors);
the triplet + counterfactual total is GeoDTR's own loss and plays L_loc (``contrastive``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cvd.baselines.base import LossContext, Recipe, register_recipe
from cvd.baselines.transgeo import SoftMarginTriplet
from cvd.errors import ConfigError
from cvd.models.heads import Head, register_head
from cvd.schema import Option, check_mapping, declared_defaults


def _descriptor_weight(rows: int, n_des: int, columns: int) -> nn.Parameter:
    """One (rows -> columns) linear map per descriptor, N(0, 0.005) as in GeoDTR."""
    return nn.Parameter(torch.empty(rows, n_des, columns).normal_(0.0, 0.005))


class GeometricLayoutExtractor(nn.Module):
    """Feature map (B, C, N) -> layout descriptors (B, N, n_des) in [-1, 1]."""

    def __init__(
        self,
        positions: int,
        n_des: int = 8,
        heads: int = 4,
        layers: int = 2,
        ffn_dim: int = 2048,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        hidden = positions // 2
        if hidden < 1:
            raise ConfigError(f"model.head.kwargs.grid: needs at least 2 positions, got {positions}")
        if layers and hidden % heads:
            raise ConfigError(
                f"model.head.kwargs.heads: {heads} must divide the token width h*w/2 = {hidden}"
            )
        self.w_in = _descriptor_weight(positions, n_des, hidden)
        self.b_in = nn.Parameter(torch.full((1, n_des, hidden), 0.1))
        self.w_out = _descriptor_weight(hidden, n_des, positions)
        self.b_out = nn.Parameter(torch.full((1, n_des, positions), 0.1))
        self.transformer: nn.Module | None = None
        if layers:
            # Index-aware positional embedding: a learned linear function of the argmax channels.
            self.position_weight = _descriptor_weight(positions, n_des, hidden)
            self.position_offset = nn.Parameter(torch.zeros(1, n_des, hidden))
            self.position_dropout = nn.Dropout(dropout)
            layer = nn.TransformerEncoderLayer(
                hidden, heads, ffn_dim, dropout, activation="gelu", batch_first=True
            )
            self.transformer = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False
            )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        channels = tokens.shape[1]
        strength, index = tokens.float().max(dim=1)  # (B, N) each
        layout = torch.einsum("bi,idj->bdj", strength, self.w_in) + self.b_in
        if self.transformer is not None:
            where = index.float() / channels
            position = torch.einsum("bi,idj->bdj", where, self.position_weight) + self.position_offset
            layout = self.transformer(self.position_dropout(layout + F.hardtanh(position)))
        layout = torch.einsum("bdj,jdi->bdi", layout, self.w_out) + self.b_out  # (B, n_des, N)
        return F.hardtanh(layout.transpose(1, 2))


@register_head("geodtr")
class GeoDTRHead(Head):
    """GeoDTR's descriptors on a map of ``grid`` (h, w) positions.

    Output: ``embedding`` (B, C * n_des), ``layout`` (B, N, n_des) and, in training mode,
    ``counterfactual`` (B, C * n_des), the pooling by random descriptors U(-1, 1).
    ``grid`` is fixed by the input size and the backbone's stride (8x42 for 122x671 at stride 16),
    because the GLE's linear maps act across positions.
    """

    option_declarations: ClassVar[dict[str, Option]] = {
        "grid": Option(
            "list", "[rows, columns] of the feature map the descriptors are sized to", low=1, length=2
        ),
        "n_des": Option("int", "number of geometric layout descriptors", low=1),
        "heads": Option("int", "attention heads of the layout extractor", low=1),
        "layers": Option("int", "transformer layers of the layout extractor", low=1),
        "ffn_dim": Option("int", "feed-forward width of the layout extractor", low=1),
    }

    def __init__(
        self,
        in_channels: int,
        grid: Sequence[int] = (8, 42),
        n_des: int = 8,
        heads: int = 4,
        layers: int = 2,
        ffn_dim: int = 2048,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if len(grid) != 2:
            raise ConfigError(f"model.head.kwargs.grid: expected [h, w] of the feature map, got {grid!r}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.extractor = GeometricLayoutExtractor(
            self.grid[0] * self.grid[1], n_des, heads, layers, ffn_dim, dropout
        )
        self.embedding_dim = int(in_channels) * int(n_des)

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        if tuple(feature_map.shape[2:]) != self.grid:
            raise ConfigError(
                f"model.head.kwargs.grid: the head expects a {list(self.grid)} feature map but got "
                f"{list(feature_map.shape[2:])}; set it to the map of your input size (122x671 at "
                "stride 16 gives [8, 42])"
            )
        tokens = feature_map.flatten(2)  # (B, C, N)
        layout = self.extractor(tokens)
        output = {"embedding": torch.bmm(tokens, layout.to(tokens.dtype)).flatten(1), "layout": layout}
        if self.training:
            random_layout = torch.empty_like(layout).uniform_(-1.0, 1.0).to(tokens.dtype)
            output["counterfactual"] = torch.bmm(tokens, random_layout).flatten(1)
        return output


def counterfactual_loss(
    factual: torch.Tensor, counterfactual: torch.Tensor, alpha: float = 5.0
) -> torch.Tensor:
    """GeoDTR's ``mean_i log(1 + exp(alpha * (2 cos(v_i, v'_i) - 2)))``: the learned layout should
    give a vector unlike the one a random layout gives."""
    cosine = (F.normalize(factual.float(), dim=1) * F.normalize(counterfactual.float(), dim=1)).sum(1)
    return F.softplus(alpha * (2.0 * cosine - 2.0)).mean()


class GeoDTRLoss(SoftMarginTriplet):
    """TransGeo's soft-margin triplet over the global batch + ``cf_weight`` x counterfactual loss."""

    def __init__(self, alpha: float = 10.0, cf_weight: float = 1.0, cf_alpha: float = 5.0) -> None:
        super().__init__(alpha)
        self.cf_weight = cf_weight
        self.cf_alpha = cf_alpha

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], context: LossContext
    ) -> dict[str, torch.Tensor]:
        terms = super().forward(outputs, batch, context)
        total = terms.pop("total")
        # The heads give counterfactuals in training mode only (nothing to push apart at inference).
        if self.cf_weight and all("counterfactual" in outputs[b]["head"] for b in ("query", "satellite")):
            # Per image, so a local mean: DDP's gradient averaging makes it the global one.
            terms["counterfactual"] = 0.5 * sum(
                counterfactual_loss(
                    outputs[branch]["embedding"], outputs[branch]["head"]["counterfactual"], self.cf_alpha
                )
                for branch in ("query", "satellite")
            )
            total = total + self.cf_weight * terms["counterfactual"]
        terms["total"] = total
        return terms


# -- layout simulation and semantic augmentation --------------------------------------------

LAYOUT_SIMULATION = ("strong", "weak", "none")
SEMANTIC_AUGMENTATION = ("strong", "weak", "none")
GEODTR_AUGMENT_SCHEMA: dict[str, Option] = {
    "polar": Option("bool", "polar-transform satellites (SAFA)", default=False, nullable=False),
    "layout_simulation": Option(
        "str", "paired flip (weak) and 90-degree turn (strong)", default="strong", choices=LAYOUT_SIMULATION,
        nullable=False,
    ),
    "semantic_augmentation": Option(
        "str", "photometric augmentation of each view", default="strong", choices=SEMANTIC_AUGMENTATION,
        nullable=False,
    ),
}  # fmt: skip
GEODTR_AUGMENT = declared_defaults(GEODTR_AUGMENT_SCHEMA)
"""Keys of ``data.augment`` for GeoDTR and their defaults. ``polar`` defaults to false like the
evaluation transform's (which reads the same key); GeoDTR's configs set it to true."""


def semantic_augmentation(strength: str) -> list[Callable[[Image.Image], Image.Image]]:
    """GeoDTR's photometric augmentation of each view (PIL in, PIL out)."""
    from torchvision import transforms as T

    if strength == "strong":
        return [
            T.ColorJitter(0.3, 0.3, 0.3),
            T.RandomGrayscale(p=0.2),
            T.RandomPosterize(bits=4, p=0.2),
            T.GaussianBlur(kernel_size=(1, 5), sigma=(0.1, 5.0)),
        ]
    if strength == "weak":
        return [T.ColorJitter(0.1, 0.1, 0.1), T.RandomGrayscale(p=0.1)]
    return []


class LayoutSimulation:
    """GeoDTR's paired geometric augmentation of (panorama, satellite) tensors.

    ``weak``: both views flipped left-right together (p = 1/2). ``strong``: also a random turn by
    k * 90 degrees, k uniform in {0, 1, 2, 3}: a polar satellite and the panorama are both rolled
    by the same -round(k W / 4) columns (their columns are the same azimuths); a square satellite
    is turned by ``torch.rot90`` with the matching panorama roll (``cvd.data.transforms.rotate_pair``).
    """

    def __init__(self, strength: str, polar: bool) -> None:
        self.strength = strength
        self.polar = polar

    def __call__(self, query: torch.Tensor, satellite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from cvd.data.transforms import rotate_pair

        if self.strength == "none":
            return query, satellite
        if torch.rand(()).item() < 0.5:
            query, satellite = query.flip(-1), satellite.flip(-1)
        if self.strength == "strong":
            k = int(torch.randint(0, 4, ()).item())
            if self.polar:
                shift = -round(k * query.shape[-1] / 4)
                query = torch.roll(query, shifts=shift, dims=-1)
                satellite = torch.roll(satellite, shifts=shift, dims=-1)
            else:
                query, satellite = rotate_pair(query, satellite, k, roll_query=True)
        return query, satellite


class GeoDTRPairTransform:
    """Each view: [polar] -> resize -> semantic augmentation -> tensor -> normalise; then the
    pair's layout simulation. Randomness from torch's generator (seeded per item by the engine)."""

    def __init__(
        self,
        query_transform: Callable[[Image.Image], torch.Tensor],
        satellite_transform: Callable[[Image.Image], torch.Tensor],
        layout: LayoutSimulation,
    ) -> None:
        self.query_transform = query_transform
        self.satellite_transform = satellite_transform
        self.layout = layout

    def __call__(self, query: Image.Image, satellite: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layout(self.query_transform(query), self.satellite_transform(satellite))


def geodtr_augment_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``data.augment`` with GeoDTR's defaults, checked (unknown keys and values name the field)."""
    given = dict((config.get("data") or {}).get("augment") or {})
    check_mapping("data.augment", given, GEODTR_AUGMENT_SCHEMA, "recipe 'geodtr'")
    return {**GEODTR_AUGMENT, **given}


def _view_transform(
    size: Sequence[int], data_config: Mapping[str, Any], polar: bool, semantic: str
) -> Callable[[Image.Image], torch.Tensor]:
    from torchvision import transforms as T

    from cvd.data.transforms import PolarTransform

    interpolation = data_config.get("interpolation", "bilinear")
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        interpolation = "bilinear"
    steps: list[Callable] = [PolarTransform()] if polar else []
    steps.append(T.Resize((int(size[0]), int(size[1])), T.InterpolationMode(interpolation), antialias=True))
    steps.extend(semantic_augmentation(semantic))
    steps.extend([T.ToTensor(), T.Normalize(list(data_config["mean"]), list(data_config["std"]))])
    return T.Compose(steps)


def _size(value: Any, fallback: Sequence[int]) -> tuple[int, int]:
    if value is None:
        return int(fallback[0]), int(fallback[1])
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


@register_recipe
class GeoDTR(Recipe):
    name = "geodtr"
    contrastive = True
    default_sampler = "location_shuffle"
    augment_schema: ClassVar[Mapping[str, Option]] = GEODTR_AUGMENT_SCHEMA
    loss_schema: ClassVar[Mapping[str, Option] | None] = {
        "alpha": Option(
            "float", "soft-margin triplet's alpha", default=10.0, low=0, low_open=True, nullable=False
        ),
        "cf_weight": Option("float", "weight of the counterfactual loss", default=1.0, low=0, nullable=False),
        "cf_alpha": Option(
            "float", "counterfactual loss's alpha", default=5.0, low=0, low_open=True, nullable=False
        ),
    }

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        options = self.loss_options
        return GeoDTRLoss(
            alpha=float(options["alpha"]),
            cf_weight=float(options["cf_weight"]),
            cf_alpha=float(options["cf_alpha"]),
        )

    def train_transform(self, config: Mapping[str, Any], data_config: Mapping[str, Any]) -> Callable:
        """GeoDTR's own augmentations (``data.augment``: polar, layout_simulation,
        semantic_augmentation), which the generic paired transform does not have: the shared
        azimuth shift of a polar satellite and its panorama."""
        options = geodtr_augment_options(config)
        data = config.get("data") or {}
        fallback = data_config["input_size"][-2:]
        query = _view_transform(
            _size(data.get("query_size"), fallback), data_config, False, options["semantic_augmentation"]
        )
        satellite = _view_transform(
            _size(data.get("satellite_size"), fallback),
            data_config,
            bool(options["polar"]),
            options["semantic_augmentation"],
        )
        layout = LayoutSimulation(options["layout_simulation"], bool(options["polar"]))
        return GeoDTRPairTransform(query, satellite, layout)
