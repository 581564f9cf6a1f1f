"""Retrieval heads: feature map (B, C, h, w) -> {"embedding": (B, D), ...extras}.

Baselines differ mostly in their head (LPN's rings, MCCG's classifiers, ...), and CVD must plug
under any of them, so heads come from a registry by name: a baseline registers its own with
`@register_head("name")` and the model builder only knows names. With CVD on, the head is built on
the content channels and runs on the content map zc.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cvd.errors import ConfigError
from cvd.schema import Option

HEADS: dict[str, Callable[..., nn.Module]] = {}

HEAD_OPTIONS: dict[str, Option] = {
    "dim": Option("int", "embedding width (null = the backbone's channels)", low=1),
    "norm": Option("bool", "L2-normalise the embedding inside the head"),
    "num_classes": Option("int", "classifier classes (set by the engine from the training set)", low=1),
    "dropout": Option("float", "dropout before the classifier", low=0, high=1, high_open=True),
    "bottleneck": Option("int", "width of the classifier's bottleneck", low=1),
    "blocks": Option("int", "number of parts (rings, regions or blocks)", low=1),
    "p": Option("float", "GeM exponent", low=0, low_open=True),
    "learn_p": Option("bool", "learn the GeM exponent"),
    "eps": Option("float", "GeM clamp floor", low=0, low_open=True),
}
"""Ranges and help of the keyword arguments heads share (``model.head.kwargs``); a head adds its
own as ``option_declarations`` on its factory. Names and defaults come from its signature."""


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a head factory `factory(in_channels, **kwargs) -> Head` under `name`."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in HEADS and HEADS[name] is not factory:
            raise ValueError(f"a head named '{name}' is already registered")
        HEADS[name] = factory
        return factory

    return decorator


def build_head(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    """Build a registered head; config mistakes name the config field at fault."""
    if name not in HEADS:
        raise ConfigError(
            f"model.head.name: unknown head '{name}'; registered heads: {', '.join(sorted(HEADS))}"
        )
    try:
        return HEADS[name](in_channels, **kwargs)
    except TypeError as error:
        raise ConfigError(
            f"model.head.kwargs: head '{name}' does not accept these arguments: {error}"
        ) from error


class Head(nn.Module):
    """Base of heads. `embedding_dim` is the width of "embedding".

    A head whose first operation is the plain mean over all positions sets
    `pools_by_global_mean = True` and implements `forward_pooled(mean_vector)`: CVD's content conv
    can then be evaluated directly on the pooled result (see `SplitProjection.global_mean`),
    which keeps inference as cheap as the baseline's.
    """

    pools_by_global_mean: bool = False
    embedding_dim: int

    def forward_pooled(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not start with a global mean")


def _projection(in_channels: int, dim: int | None, norm: bool) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    if norm:
        layers.append(nn.LayerNorm(in_channels))
    if dim is not None:
        layers.append(nn.Linear(in_channels, int(dim)))
    return nn.Sequential(*layers), int(dim) if dim is not None else in_channels


@register_head("gap")
class GapHead(Head):
    """Global average pooling, optional LayerNorm, optional linear projection to `dim`.

    The Sample4Geo-style head (their timm models pool with a plain mean)."""

    pools_by_global_mean = True

    def __init__(self, in_channels: int, dim: int | None = None, norm: bool = False) -> None:
        super().__init__()
        self.project, self.embedding_dim = _projection(in_channels, dim, norm)

    def forward_pooled(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.project(pooled)}

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_pooled(feature_map.mean(dim=(2, 3)))


@register_head("gem")
class GemHead(Head):
    """Generalised-mean pooling (Radenović et al.), optional LayerNorm and projection.

    Written here because timm ships no GeM layer; p is learnable by default (init 3).
    """

    def __init__(
        self,
        in_channels: int,
        p: float = 3.0,
        learn_p: bool = True,
        eps: float = 1e-6,
        dim: int | None = None,
        norm: bool = False,
    ) -> None:
        super().__init__()
        p_tensor = torch.tensor(float(p))
        self.p = nn.Parameter(p_tensor) if learn_p else nn.Buffer(p_tensor)
        self.eps = eps
        self.project, self.embedding_dim = _projection(in_channels, dim, norm)

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = feature_map.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)
        return {"embedding": self.project(pooled)}
