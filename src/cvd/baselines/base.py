"""What every baseline recipe provides, and the registry that finds one by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from cvd.data.transforms import AUGMENT_SCHEMA
from cvd.errors import ConfigError
from cvd.schema import Option, declared_defaults


@dataclass
class LossContext:
    """What a loss needs beyond the model outputs.

    ``gather`` concatenates a tensor over all ranks with its gradient (identity in a world of
    one): losses whose negatives or permutations must span the global batch call it.
    ``generator`` is seeded identically on every rank for the current step, so random
    projections and permutations agree across ranks.
    """

    gather: Callable[[torch.Tensor], torch.Tensor]
    generator: torch.Generator
    step: int = 0


class Recipe:
    """A baseline's recipe. Subclasses register with :func:`register_recipe`.

    ``contrastive`` says whether the baseline's own retrieval loss is a cross-view contrastive
    loss: then it plays the role of CVD's L_loc (weighted by lambda3) instead of adding a second
    InfoNCE (``cvd.loc: auto``).

    ``loss_schema`` declares the ``loss:`` options (type, range, default, help): the config is
    checked against it before anything runs, and ``loss_options`` holds the given values over
    the declared defaults, so each default is written once, in the declaration.
    ``augment_schema`` declares the ``data.augment`` keys its ``train_transform`` reads (the
    shared paired transform's unless the recipe brings its own augmentations).
    """

    name: ClassVar[str] = ""
    contrastive: ClassVar[bool] = False
    default_sampler: ClassVar[str] = "location_shuffle"
    loss_schema: ClassVar[Mapping[str, Option] | None] = None  # None: not declared (anything goes)
    augment_schema: ClassVar[Mapping[str, Option]] = AUGMENT_SCHEMA  # what train_transform reads
    model_keys: ClassVar[frozenset[str]] = frozenset()  # model.head.kwargs the recipe consumes

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        declared = declared_defaults(self.loss_schema or {})
        self.loss_options: Mapping[str, Any] = {**declared, **(config.get("loss") or {})}

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """The retrieval model (backbone, CVD when enabled, this baseline's head).

        Overrides build on :func:`cvd.models.model.build_retrieval_model`, never on
        :func:`cvd.models.build_model`, which dispatches back here.
        """
        from cvd.models.model import build_retrieval_model

        return build_retrieval_model(config)

    def build_criterion(self, config: Mapping[str, Any]) -> nn.Module:
        """A module computing this baseline's own loss terms; it owns the loss's parameters.

        Its ``forward(outputs, batch, context)`` returns a dict of named terms and ``"total"``,
        the baseline's own weighted sum.
        """
        raise NotImplementedError

    def train_transform(self, config: Mapping[str, Any], data_config: Mapping[str, Any]) -> Callable:
        """The paired training transform (same flip for both views, etc., as the baseline does)."""
        from cvd.data.transforms import build_pair_transform

        return build_pair_transform(config, data_config, training=True)

    def eval_transform(
        self, config: Mapping[str, Any], data_config: Mapping[str, Any], view: str
    ) -> Callable:
        """Deterministic resize + normalise for one view."""
        from cvd.data.transforms import build_eval_transform

        return build_eval_transform(config, data_config, view)


RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: make a recipe available as ``model.baseline: <cls.name>``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in RECIPES:
        raise ValueError(f"recipe {cls.name!r} is registered twice")
    RECIPES[cls.name] = cls
    return cls


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as ``name``; the error lists the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(RECIPES))
        raise ConfigError(
            f"model.baseline = {name!r} is not a known recipe; choose one of: {known}"
        ) from None
