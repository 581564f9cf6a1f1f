"""Shared helpers of the baseline tests: a tiny config of any recipe, and training on a fixed batch.

Every baseline is checked the same way: it builds from a config with a tiny backbone, a few
optimiser steps on one fixed random batch lower its total loss (with and without CVD), and
``embed()`` returns L2-normalised vectors of the documented size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cvd.baselines import LossContext, get_recipe
from cvd.config import load_config
from cvd.engine.objective import TrainingObjective
from cvd.engine.optim import build_optimizer
from cvd.engine.trainer import step_generator

TINY_CNN = ["model.backbone.name=test_efficientnet", "model.backbone.pretrained=false"]
TINY_VIT = ["model.backbone.name=test_vit", "model.backbone.pretrained=false"]
TINY_CVD = ["cvd.recon_size=8", "cvd.decoder_channels=8", "cvd.n_projections=16"]


def tiny_config(
    baseline: str,
    cvd: bool = False,
    overrides: Sequence[str] = (),
    backbone: Sequence[str] = TINY_CNN,
    num_classes: int = 4,
) -> dict[str, Any]:
    """The default config with this recipe, a tiny backbone, and the engine's num_classes filled in."""
    config = load_config(
        None,
        [
            f"model.baseline={baseline}",
            *backbone,
            f"cvd.enabled={str(cvd).lower()}",
            *TINY_CVD,
            "optim.name=adamw",
            "optim.lr=1e-3",
            "optim.weight_decay=0.0",
            "optim.backbone_lr_scale=1.0",
            *overrides,
        ],
    )
    config["model"]["num_classes"] = num_classes
    return config


def fixed_batch(
    batch_size: int = 4,
    query_size: tuple[int, int] = (32, 32),
    satellite_size: tuple[int, int] = (32, 32),
    seed: int = 0,
) -> dict[str, Any]:
    """One batch of random images with distinct locations (labels 0..batch_size-1)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "query": torch.randn(batch_size, 3, *query_size, generator=generator),
        "satellite": torch.randn(batch_size, 3, *satellite_size, generator=generator),
        "label": torch.arange(batch_size),
        "index": torch.arange(batch_size),
    }


def build_objective(config: dict[str, Any]) -> TrainingObjective:
    """What the trainer optimises: the recipe's model + its criterion + the CVD terms."""
    recipe = get_recipe(config["model"]["baseline"])(config)
    model = recipe.build_model(config)
    return TrainingObjective(model, recipe.build_criterion(config), config["cvd"], recipe.contrastive)


def train_on_fixed_batch(
    config: dict[str, Any], batch: dict[str, Any], steps: int = 5
) -> tuple[list[dict[str, float]], TrainingObjective]:
    """Loss terms at each of ``steps`` optimiser steps on the same batch (single process)."""
    torch.manual_seed(0)
    objective = build_objective(config)
    objective.train()
    optimizer = build_optimizer(objective, config["optim"])
    history = []
    for step in range(steps):
        context = LossContext(gather=lambda tensor: tensor, generator=step_generator(0, step), step=step)
        terms = objective(batch, context)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    return history, objective
