"""Write tiny fake SUES-200 trees: the raw download layout and the split script's layout.

Raw:   drone_view_512/<id>/<h>/<0..n>.jpg, satellite-view/<id>/0.png
Split: Training/<h>/{drone,satellite}/<train id>/, Testing/<h>/{query_drone,query_satellite}/<test id>/,
       Testing/<h>/{gallery_drone,gallery_satellite}/<all ids>/ (lowercase train/test optional).
Run as a script: `python tests/data/sues200/write_tree.py /tmp/SUES-200-512x512 [raw|split]`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

ALTITUDES = (150, 200, 250, 300)


def _image(path: Path, rng: np.random.Generator, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(path, format=fmt)


def write_sues200_raw(
    root: str | Path,
    ids: Sequence[str] = tuple(f"{i:04d}" for i in range(1, 9)),
    altitudes: Sequence[int] = ALTITUDES,
    drone_per_altitude: int = 3,
    seed: int = 0,
) -> dict:
    """The download's layout; returns the ids and the drone file names."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    drones = [f"{k}.jpg" for k in range(drone_per_altitude)]
    for loc in ids:
        _image(root / "satellite-view" / loc / "0.png", rng, "PNG")
        for height in altitudes:
            for name in drones:
                _image(root / "drone_view_512" / loc / str(height) / name, rng, "JPEG")
    return {"ids": list(ids), "drones": drones}


def write_sues200_split(
    root: str | Path,
    train_ids: Sequence[str] = ("0001", "0002", "0003", "0004", "0005"),
    test_ids: Sequence[str] = ("0006", "0007", "0008"),
    altitudes: Sequence[int] = ALTITUDES,
    drone_per_altitude: int = 3,
    lowercase: bool = False,
    seed: int = 0,
) -> dict:
    """The split script's layout (as `script/split_datasets.py` of the benchmark writes it)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    train_dir, test_dir = ("train", "test") if lowercase else ("Training", "Testing")
    drones = [f"{k}.jpg" for k in range(drone_per_altitude)]
    for height in altitudes:
        h = str(height)
        for loc in train_ids:
            _image(root / train_dir / h / "satellite" / loc / "0.png", rng, "PNG")
            for name in drones:
                _image(root / train_dir / h / "drone" / loc / name, rng, "JPEG")
        for loc in test_ids:
            _image(root / test_dir / h / "query_satellite" / loc / "0.png", rng, "PNG")
            for name in drones:
                _image(root / test_dir / h / "query_drone" / loc / name, rng, "JPEG")
        for loc in list(train_ids) + list(test_ids):
            _image(root / test_dir / h / "gallery_satellite" / loc / "0.png", rng, "PNG")
            for name in drones:
                _image(root / test_dir / h / "gallery_drone" / loc / name, rng, "JPEG")
    return {"train": list(train_ids), "test": list(test_ids), "drones": drones}


def write_tree(root: str | Path) -> dict:
    """The registry-driven tests' entry point: a tree, and the constructor options it needs."""
    write_sues200_split(root)
    return {}


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "SUES-200-512x512"
    layout = sys.argv[2] if len(sys.argv) > 2 else "raw"
    print(write_sues200_raw(target) if layout == "raw" else write_sues200_split(target))
