"""Write a tiny fake University-1652 tree in the exact real layout (random pixels, real names).

The real benchmark has 701 training buildings, 701 test buildings and 250 distractor buildings
in the test galleries; this writes the same structure scaled down. Run as a script to inspect
one: `python tests/data/university1652/write_tree.py /tmp/University-Release`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def write_university1652(
    root: str | Path,
    n_train: int = 4,
    n_test: int = 7,
    n_distractors: int = 3,
    drone_per_building: int = 3,
    street_per_building: int = 2,
    seed: int = 0,
) -> dict:
    """Write the tree under `root`; returns the ids written per role.

    Ids: training buildings 0001.., test buildings 0101.., distractors 0201.. (real ids are
    4-digit zero-padded numbers; training and test buildings are disjoint as in the benchmark).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    train = [f"{i:04d}" for i in range(1, n_train + 1)]
    test = [f"{i:04d}" for i in range(101, 101 + n_test)]
    distractors = [f"{i:04d}" for i in range(201, 201 + n_distractors)]
    drones = [f"image-{k:02d}.jpeg" for k in range(1, drone_per_building + 1)]
    streets = [f"{k}.jpg" for k in range(street_per_building)]
    for loc in train:
        _image(root / "train" / "satellite" / loc / f"{loc}.jpg", rng)
        for name in drones:
            _image(root / "train" / "drone" / loc / name, rng)
        for name in streets:
            _image(root / "train" / "street" / loc / name, rng)
        _image(root / "train" / "google" / loc / "0.jpg", rng)
    for loc in test + distractors:
        _image(root / "test" / "gallery_satellite" / loc / f"{loc}.jpg", rng)
        for name in drones:
            _image(root / "test" / "gallery_drone" / loc / name, rng)
        for name in streets:
            _image(root / "test" / "gallery_street" / loc / name, rng)
    for loc in test:
        _image(root / "test" / "query_satellite" / loc / f"{loc}.jpg", rng)
        for name in drones:
            _image(root / "test" / "query_drone" / loc / name, rng)
        for name in streets:
            _image(root / "test" / "query_street" / loc / name, rng)
    return {"train": train, "test": test, "distractors": distractors, "drones": drones, "streets": streets}


def write_tree(root: str | Path) -> dict:
    """The registry-driven tests' entry point: a tree, and the constructor options it needs."""
    write_university1652(root)
    return {}


if __name__ == "__main__":
    print(write_university1652(sys.argv[1] if len(sys.argv) > 1 else "University-Release"))
