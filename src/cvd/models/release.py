"""Released weights: one directory with `model.safetensors` and the `config.yaml` that rebuilds it.

safetensors because a release is loaded by people who did not make it: it runs no pickled code.
The config travels with the weights so that the model is rebuilt exactly (backbone, head, CVD
switches), and loading is strict: a file from another model is an error, not a partial load.

The two files are bound: the weights' metadata holds the SHA-256 of the exact config text
(``cvd_config_sha256``), checked on every load, so an edited config.yaml (another ``query_size``,
normalisation, head) cannot silently change what the weights compute. The release's identity
(``cvd.geo.embedders.release_identity``) hashes both files, so it covers the binding too.
Releases written before the binding (no such metadata) still load, with a warning that their
config cannot be checked.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cvd.atomic import atomic_output, atomic_write_text
from cvd.errors import CheckpointError, CVDError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
RELEASE_DIR = "release"  # inside a run folder
CONFIG_HASH_KEY = "cvd_config_sha256"

LOGGER = logging.getLogger("cvd")


def config_digest(text: str | bytes) -> str:
    """SHA-256 of a release config's exact text (what the weights' metadata records)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


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
    # A release must load into a plain model: unwrap DDP / DataParallel and torch.compile.
    while isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        model = model.module
    model = getattr(model, "_orig_mod", model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    weights_path = directory / WEIGHTS_NAME
    config_text = yaml.safe_dump(_plain(config), sort_keys=False)
    write_bound_release(state, config_text, directory)
    return weights_path


def write_bound_release(state: Mapping[str, torch.Tensor], config_text: str, directory: Path) -> None:
    """Weights (with the config's hash in their metadata) then the config, both atomically."""
    from safetensors.torch import save_file

    metadata = {"format": "pt", "producer": "cvd", CONFIG_HASH_KEY: config_digest(config_text)}
    with atomic_output(directory / WEIGHTS_NAME) as temporary:
        save_file(dict(state), str(temporary), metadata=metadata)
    atomic_write_text(directory / CONFIG_NAME, config_text)


def check_binding(weights_path: Path, config_path: Path) -> None:
    """Refuse a release whose config.yaml is not the one its weights were saved with."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            expected = (handle.metadata() or {}).get(CONFIG_HASH_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path}: corrupt or not a safetensors file: {error}") from error
    if expected is None:
        LOGGER.warning(
            "%s predates config binding (no %s in its metadata): %s cannot be checked against it",
            weights_path,
            CONFIG_HASH_KEY,
            config_path,
        )
        return
    if config_digest(config_path.read_bytes()) != expected:
        raise CheckpointError(
            f"{config_path}: changed since the release was written (its SHA-256 is not the one "
            f"recorded in {weights_path}); an edited config can change preprocessing and results "
            "silently. Restore the original config.yaml, or train/export a new release"
        )


def release_weights(path: str | os.PathLike[str]) -> Path:
    """The weights file of a run folder (its ``release/``), a release folder or a .safetensors file.

    The one place that knows where a run keeps its released weights: training's
    ``model.init_from``, ``cvd test``, ``cvd index`` and ``cvd localize`` all resolve through here.
    """
    path = Path(path)
    if path.is_dir() and (path / RELEASE_DIR / WEIGHTS_NAME).is_file():
        return path / RELEASE_DIR / WEIGHTS_NAME
    if path.is_dir():
        weights = path / WEIGHTS_NAME
    elif path.suffix == ".safetensors":
        weights = path
    elif not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    else:
        raise CheckpointError(f"{path}: not a run folder, a release folder nor a .safetensors file")
    if not weights.is_file():
        raise CheckpointError(
            f"{weights}: missing; a release holds {WEIGHTS_NAME} and {CONFIG_NAME} (a run folder holds "
            f"them in {RELEASE_DIR}/ once its training has finished)"
        )
    return weights


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file on the CPU; a damaged file is an error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file: {error}") from error


def release_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights, config) of a run folder, a release folder or a .safetensors file; both must exist."""
    weights = release_weights(path)  # checked to exist
    config = weights.with_name(CONFIG_NAME)
    if not config.is_file():
        raise CheckpointError(f"{config}: missing; a release holds {WEIGHTS_NAME} and {CONFIG_NAME}")
    return weights, config


def read_release(
    path: str | os.PathLike[str], build_model: Callable[[Mapping[str, Any]], nn.Module]
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the released model with `build_model` (no weight download: the file has them) and
    load it strictly. Use ``cvd.factory.load_release``, which builds through the model's recipe.

    ``path``: a run folder, a release folder or a .safetensors file (see :func:`release_weights`).
    Returns the model in eval mode and its config.
    """

    weights_path, config_path = release_paths(path)
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
    state = read_weights(weights_path)
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
    check_binding(weights_path, config_path)
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return model.eval(), config
