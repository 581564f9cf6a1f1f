"""Fixtures of the engine tests: a tiny synthetic world and a config that trains on it in seconds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A University-1652-layout synthetic world: 4 train + 4 test locations, 2 drone views, 32 px."""
    from cvd.data.synthetic import generate

    return generate(
        "university1652", tmp_path_factory.mktemp("world"), locations=8, views_per_location=2, size=32, seed=0
    )


def write_tiny_config(directory: Path, world: Path, **sections: object) -> Path:
    """An experiment file: tiny LayerNorm backbone, CVD on, deterministic, one worker-less loader."""
    config = {
        "name": "tiny",
        "output_dir": str(directory / "runs"),
        "deterministic": True,
        "data": {
            "dataset": "university1652",
            "root": str(world),
            "query_size": [32, 32],
            "satellite_size": [32, 32],
            "batch_size": 4,
            "eval_batch_size": 8,
            "num_workers": 0,
            "augment": {"flip_prob": 0.5, "satellite_rotate90": True},
        },
        "model": {"backbone": {"name": "test_convnext", "pretrained": False}},
        "cvd": {"enabled": True, "recon_size": 8, "decoder_channels": 8, "n_projections": 16},
        "optim": {"lr": 0.001},
        "schedule": {"epochs": 3, "warmup_epochs": 0.5},
        "train": {"log_every": 1},
        "eval": {"every_epochs": 1},
        "checkpoint": {"every_steps": 1, "keep_last": 2},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path = directory / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_world: Path):
    """A function (**sections) -> path of a tiny experiment file in this test's folder."""

    def make(**sections: object) -> Path:
        return write_tiny_config(tmp_path, tiny_world, **sections)

    return make


def run_cvd(*args: str, preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """`python -m cvd ARGS` in a fresh process, as a user runs it; output captured, never raises."""
    return subprocess.run(
        [sys.executable, "-m", "cvd", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=preexec_fn,
    )
