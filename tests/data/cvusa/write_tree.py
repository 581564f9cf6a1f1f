"""Write a tiny fake CVUSA tree in the real layout: 19zl split files, all.csv GPS, polar maps.

bingmap/19/<7-digit n>.jpg, streetview/panos/<n>.jpg, splits/{train,val}-19zl.csv (no header,
`sat,ground,ground_anno`), split_locations/all.csv (no header, row n-1 = image n:
`sat_lat,sat_long,ground_lat,ground_long,<unknown>`), polarmap/19/<n>.png (optional).
Run as a script: `python tests/data/cvusa/write_tree.py /tmp/CVUSA`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int], fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)).save(path, format=fmt)


def ground_gps(number: int) -> tuple[float, float]:
    """The ground (lat, lon) written for image `number`: a 0.01-degree grid in Kansas."""
    return 38.0 + 0.01 * (number % 5), -97.0 + 0.01 * (number // 5)


def write_cvusa(
    root: str | Path,
    train: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8),
    val: Sequence[int] = (9, 10, 11, 12),
    gps: bool = True,
    polar: bool = False,
    seed: int = 0,
) -> dict:
    """Write the tree; image numbers are 1-based as in CVUSA. Returns the numbers per split."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split, numbers in (("train", train), ("val", val)):
        lines = []
        for n in numbers:
            name = f"{n:07d}"
            _image(root / "bingmap" / "19" / f"{name}.jpg", rng, (16, 16))
            _image(root / "streetview" / "panos" / f"{name}.jpg", rng, (8, 32))
            if polar:
                _image(root / "polarmap" / "19" / f"{name}.png", rng, (6, 32), "PNG")
            lines.append(
                f"bingmap/19/{name}.jpg,streetview/panos/{name}.jpg,streetview/annotations/{name}.png"
            )
        (root / "splits" / f"{split}-19zl.csv").write_text("\n".join(lines) + "\n")
    if gps:
        (root / "split_locations").mkdir(exist_ok=True)
        rows = []
        for n in range(1, max([*train, *val]) + 1):
            lat, lon = ground_gps(n)
            rows.append(f"{lat + 0.0001},{lon + 0.0001},{lat},{lon},0")
        (root / "split_locations" / "all.csv").write_text("\n".join(rows) + "\n")
    return {"train": list(train), "val": list(val)}


def write_tree(root: str | Path) -> dict:
    """The registry-driven tests' entry point: a tree, and the constructor options it needs."""
    write_cvusa(root)
    return {}


if __name__ == "__main__":
    print(write_cvusa(sys.argv[1] if len(sys.argv) > 1 else "CVUSA", polar=True))
