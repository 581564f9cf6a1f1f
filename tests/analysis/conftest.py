"""A tiny trained CVD run for the analysis tests (tiny world, tiny backbone, a few steps)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 train + 6 test locations, 2 drone views each, 32 px."""
    from cvd.data.synthetic import generate

    return generate(
        "university1652",
        tmp_path_factory.mktemp("world"),
        locations=12,
        views_per_location=2,
        size=32,
        seed=0,
    )


def train_tiny(directory: Path, world: Path, **cvd: object) -> Path:
    """Train a tiny CVD model for a few steps through the real CLI; returns its run folder."""
    from cvd.cli import main

    config = {
        "name": "tiny",
        "output_dir": str(directory / "runs"),
        "data": {
            "root": str(world),
            "query_size": [32, 32],
            "satellite_size": [32, 32],
            "batch_size": 4,
            "eval_batch_size": 8,
            "num_workers": 0,
        },
        "model": {"backbone": {"name": "test_convnext", "pretrained": False}},
        "cvd": {"enabled": True, "recon_size": 8, **cvd},
        "schedule": {"epochs": 1, "warmup_epochs": 0.0},
        "eval": {"every_epochs": 0},
    }
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    return directory / "runs" / "tiny"
