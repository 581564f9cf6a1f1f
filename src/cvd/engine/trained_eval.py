"""Evaluate a trained model outside training (``cvd test``)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from cvd.config import (
    load_config,
    merge,
    packaged_config_path,
    parse_override,
    read_yaml,
    set_dotted,
    validate,
)
from cvd.engine.checkpoint import load_checkpoint
from cvd.engine.data import dataset_from_config
from cvd.engine.distributed import init_distributed, shutdown_distributed
from cvd.engine.evaluate import evaluate_model, write_results
from cvd.errors import CheckpointError


def load_trained(path: Path) -> tuple[Any, dict[str, Any], Path]:
    """(model, its config, the run or release folder) from a run, a release or a checkpoint."""
    from cvd.factory import build_model, load_release
    from cvd.models.release import RELEASE_DIR, release_weights

    if not path.exists():
        raise CheckpointError(
            f"{path}: no such file or directory (--model takes a run folder, its release/ folder, "
            "a model.safetensors or a checkpoints/step-N.ckpt)"
        )
    if path.suffix == ".ckpt":
        run_dir = path.parent.parent
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise CheckpointError(f"{path}: no config.yaml in its run folder {run_dir}")
        config = read_yaml(config_path)
        config["model"]["backbone"]["pretrained"] = False  # the checkpoint holds the weights
        state = load_checkpoint(path)
        model = build_model(config)
        prefix = "model."
        weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not match the model of {config_path}: {error}") from error
        return model, config, run_dir
    try:
        weights = release_weights(path)
    except CheckpointError as error:
        hint = "; for an unfinished run pass one of its checkpoints/step-N.ckpt" if path.is_dir() else ""
        raise CheckpointError(f"{error}{hint}") from error
    model, config = load_release(weights)
    release = weights.parent
    return model, dict(config), release.parent if release.name == RELEASE_DIR else release


def resolve_test_config(
    trained_config: dict[str, Any], data_config_path: Path | None, overrides: list[str]
) -> dict[str, Any]:
    """The trained model's config, with another benchmark's data/eval sections and overrides."""
    schema = read_yaml(packaged_config_path())
    config = merge(schema, trained_config)
    if data_config_path is not None:
        other = load_config(data_config_path)
        config["data"] = copy.deepcopy(other["data"])
        config["eval"] = copy.deepcopy(other["eval"])
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(config, key, value)
    validate(config, schema)
    return config


def evaluate_trained(
    path: Path,
    data_config_path: Path | None = None,
    overrides: list[str] | None = None,
    out: Path | None = None,
) -> tuple[list[dict[str, Any]], Path | None]:
    """Evaluate ``path`` on every split of the configured benchmark; returns results and JSON path."""
    model, trained_config, run_dir = load_trained(path)
    config = resolve_test_config(trained_config, data_config_path, list(overrides or []))
    dist = init_distributed(config["train"]["device"])
    try:
        model.to(dist.device).eval()
        if config["model"].get("channels_last", True):
            model.to(memory_format=torch.channels_last)  # as trained: depthwise convs run faster
        benchmark = dataset_from_config(config)
        results = evaluate_model(model, SimpleNamespace(benchmark=benchmark), config, dist)
        written = None
        if dist.is_main:
            variant = config["eval"]["gallery_variant"]
            written = out or run_dir / "test" / f"{config['data']['dataset']}-{variant}.json"
            write_results(results, written)
        return results, written
    finally:
        shutdown_distributed()
