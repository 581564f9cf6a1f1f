"""Write a tiny fake CVACT tree: ACT_data.mat (scipy.io.savemat, 1-based indices) and images.

ACT_data.mat fields: panoIds (N strings), utm (N x 2, easting/northing in UTM zone 55 south),
trainSet.trainInd, valSet.valInd (CVACT_val), valSetAll.valInd (CVACT_test); images
ANU_data_small/{streetview/<id>_grdView.jpg, satview_polish/<id>_satView_polish.jpg} for the
train and val rows, ANU_data_test/... for the test rows.
Run as a script: `python tests/data/cvact/write_tree.py /tmp/CVACT`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def pano_id(row: int) -> str:
    """Pano ids look like `__-DFIFxvZBCn1873qkqXA` (22 characters); row is 0-based."""
    return f"__pano{row:04d}xyzABCDEFGHI"[:22]


def utm_of(row: int) -> tuple[float, float]:
    """(easting, northing) written for 0-based row `row`: 50 m steps around Canberra."""
    return 693_000.0 + 50.0 * (row % 4), 6_090_000.0 + 50.0 * (row // 4)


def write_cvact(
    root: str | Path,
    n: int = 12,
    train: Sequence[int] = (1, 2, 3, 4, 5, 6),
    val: Sequence[int] = (7, 8, 9),
    test: Sequence[int] = (10, 11, 12),
    northing_first: bool = False,
    seed: int = 0,
) -> dict:
    """Write the tree; `train`, `val`, `test` are 1-based rows of panoIds, as in the real file."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = [pano_id(row) for row in range(n)]
    utm = np.asarray([utm_of(row) for row in range(n)])
    if northing_first:
        utm = utm[:, ::-1].copy()
    root.mkdir(parents=True, exist_ok=True)
    savemat(
        root / "ACT_data.mat",
        {
            "panoIds": np.asarray(ids),
            "utm": utm,
            "trainSet": {"trainInd": np.asarray(train, dtype=np.float64).reshape(-1, 1)},
            "valSet": {"valInd": np.asarray(val, dtype=np.float64).reshape(-1, 1)},
            "valSetAll": {"valInd": np.asarray(test, dtype=np.float64).reshape(-1, 1)},
        },
    )
    for folder, rows in (("ANU_data_small", [*train, *val]), ("ANU_data_test", test)):
        (root / folder / "streetview").mkdir(parents=True, exist_ok=True)
        (root / folder / "satview_polish").mkdir(parents=True, exist_ok=True)
        for row in rows:
            pano = ids[row - 1]
            _image(root / folder / "streetview" / f"{pano}_grdView.jpg", rng, (8, 16))
            _image(root / folder / "satview_polish" / f"{pano}_satView_polish.jpg", rng, (16, 16))
    return {"ids": ids, "train": list(train), "val": list(val), "test": list(test)}


def write_tree(root: str | Path) -> dict:
    """The registry-driven tests' entry point: a tree, and the constructor options it needs."""
    write_cvact(root)
    return {}


if __name__ == "__main__":
    print(write_cvact(sys.argv[1] if len(sys.argv) > 1 else "CVACT"))
