"""Released weights: one directory with `model.safetensors` and the `config.yaml` that rebuilds it.

safetensors because a release is loaded by people who did not make it: it runs no pickled code.
The config travels with the weights so that the model is rebuilt exactly (backbone, head, CVD
switches), and loading is strict: a file from another model is an error, not a partial load.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cvd.atomic import atomic_output, atomic_write_text
from cvd.errors import CheckpointError, CVDError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"


def _plain(value: Any) -> Any:
    """Config values as YAML-safe builtins (Paths, tuples and mapping types are common in configs)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value) not in (str, int, float, bool) and hasattr(value, "item"):
        return value.item()  # numpy / torch scalars (np.float64 subclasses float, YAML refuses it)
    return value


def save_release(model: nn.Module, config: Mapping[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write `model.safetensors` + `config.yaml` into `directory`; returns the weights path."""
    from safetensors.torch import save_file

    # A release must load into a plain model: unwrap DDP / DataParallel and torch.compile.
    while isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        model = model.module
    model = getattr(model, "_orig_mod", model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    weights_path = directory / WEIGHTS_NAME
    with atomic_output(weights_path) as temporary:
        save_file(state, str(temporary), metadata={"format": "pt", "producer": "cvd"})
    atomic_write_text(directory / CONFIG_NAME, yaml.safe_dump(_plain(config), sort_keys=False))
    return weights_path


def _release_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    path = Path(path)
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CONFIG_NAME
    if path.suffix == ".safetensors":
        return path, path.with_name(CONFIG_NAME)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    raise CheckpointError(f"{path}: not a release directory nor a .safetensors file")


def load_release(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the released model (no weight download: the file has them) and load it strictly.

    Returns the model in eval mode and its config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cvd.models.model import build_model

    weights_path, config_path = _release_paths(path)
    for required in (weights_path, config_path):
        if not required.is_file():
            raise CheckpointError(f"{required}: missing; a release holds {WEIGHTS_NAME} and {CONFIG_NAME}")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path}: not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{config_path}: has no 'model' section to rebuild the model from")
    build_config = copy.deepcopy(config)
    backbone = build_config["model"].get("backbone")
    if isinstance(backbone, dict):
        backbone["pretrained"] = False  # the weights come from the release file
    try:
        model = build_model(build_config)
    except CVDError as error:
        raise CheckpointError(f"{config_path}: cannot rebuild the model: {error}") from error
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: corrupt or not a safetensors file: {error}") from error
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mis_shaped = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or mis_shaped:
        details = [
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mis_shaped),
            )
            if keys
        ]
        raise CheckpointError(
            f"{weights_path}: does not match the model of {config_path}: {'; '.join(details)}"
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return model.eval(), config
