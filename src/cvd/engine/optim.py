"""Optimiser and learning-rate schedule from the config's ``optim`` and ``schedule`` sections.

The schedule is stepped once per optimiser step (not per epoch), so warm-up fractions of an
epoch (Sample4Geo warms up for 0.1 epoch) and one-epoch recipes work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cvd.errors import ConfigError

PARTS = ("head", "encoder", "cvd")  # the logged lr is the first group's: the head's


def _part(name: str) -> str:
    if ".backbone" in f".{name}" or name.startswith("backbone"):
        return "encoder"
    if ".cvd." in f".{name}":
        return "cvd"
    return "head"


def parameter_groups(
    module: nn.Module,
    weight_decay: float,
    lr: float,
    backbone_lr_scale: float,
    cvd_lr_scale: float = 1.0,
    cvd_weight_decay_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Split parameters into (encoder | CVD module | rest) x (decay | no decay).

    Pretrained encoders are often tuned with a smaller learning rate (LPN, MCCG, FSRA: 0.1-0.3x);
    the CVD module (split and decoders) has its own factors (``cvd.lr_scale``,
    ``cvd.weight_decay_scale``); biases, norm weights and scalars (e.g. a learnable logit scale)
    get no weight decay, as in Sample4Geo's recipe.
    """
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        groups.setdefault((_part(name), parameter.ndim <= 1), []).append(parameter)
    lr_scales = {"encoder": backbone_lr_scale, "cvd": cvd_lr_scale, "head": 1.0}
    decay_scales = {"encoder": 1.0, "cvd": cvd_weight_decay_scale, "head": 1.0}
    result = []
    for (part, no_decay), params in sorted(
        groups.items(), key=lambda item: (PARTS.index(item[0][0]), item[0][1])
    ):
        scale = lr_scales[part]
        result.append(
            {
                "params": params,
                "lr": lr * scale,
                "initial_lr": lr * scale,
                "weight_decay": 0.0 if no_decay else weight_decay * decay_scales[part],
                "group": part + ("/no_decay" if no_decay else ""),
            }
        )
    return result


def build_optimizer(
    module: nn.Module, optim_config: Mapping[str, Any], cvd_config: Mapping[str, Any] | None = None
) -> torch.optim.Optimizer:
    """AdamW or SGD over :func:`parameter_groups`."""
    lr = float(optim_config["lr"])
    cvd_config = cvd_config or {}
    groups = parameter_groups(
        module,
        float(optim_config["weight_decay"]),
        lr,
        float(optim_config["backbone_lr_scale"]),
        cvd_lr_scale=float(cvd_config.get("lr_scale") or 1.0),
        cvd_weight_decay_scale=float(
            1.0 if cvd_config.get("weight_decay_scale") is None else cvd_config["weight_decay_scale"]
        ),
    )
    name = optim_config["name"]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(optim_config["momentum"]), nesterov=True)
    raise ConfigError(f"optim.name = {name!r} is not allowed; choose one of: adamw, sgd")


def lr_factor(step: int, schedule: Mapping[str, Any], steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps.

    Linear warm-up over ``warmup_epochs`` then: cosine to 0 at ``total_steps``; step decay by
    ``gamma`` every ``step_size`` epochs; decay at each epoch in ``milestones``; or constant.
    """
    warmup_steps = round(float(schedule["warmup_epochs"]) * steps_per_epoch)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    name = schedule["name"]
    epoch = step / max(1, steps_per_epoch)
    if name == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "step":
        size = int(schedule["step_size"])
        return float(schedule["gamma"]) ** (int(epoch) // size) if size > 0 else 1.0
    if name == "multistep":
        passed = sum(1 for milestone in schedule["milestones"] if epoch >= float(milestone))
        return float(schedule["gamma"]) ** passed
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: Mapping[str, Any],
    steps_per_epoch: int,
    total_steps: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, schedule, steps_per_epoch, total_steps)
    )
