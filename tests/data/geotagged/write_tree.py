"""A tiny geo-tagged folder: satellite tiles and drone photos listed in a CSV with lat/lon.

python tests/data/geotagged/write_tree.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROWS = (
    ("tiles/a.png", 47.0000, 8.0000, "satellite"),
    ("tiles/b.png", 47.0100, 8.0000, "satellite"),
    ("tiles/c.png", 47.0200, 8.0000, "satellite"),
    ("drone/1.jpg", 47.0002, 8.0001, "drone"),
    ("drone/2.jpg", 47.0195, 8.0003, "drone"),
    ("drone/3.jpg", 47.0101, 8.0002, "drone"),
)


def write_tree(root: str | Path) -> dict:
    """Write the folder and `images.csv`; returns the constructor options it needs."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for path, *_ in ROWS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / path)
    lines = ["path,lat,lon,view", *(f"{path},{lat},{lon},{view}" for path, lat, lon, view in ROWS)]
    (root / "images.csv").write_text("\n".join(lines) + "\n")
    return {"csv": "images.csv"}


if __name__ == "__main__":
    print(write_tree(sys.argv[1] if len(sys.argv) > 1 else "geotagged"))
