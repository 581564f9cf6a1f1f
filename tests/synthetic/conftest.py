"""Helpers for the synthetic-world tests: neutral lighting, hand-made scenes, marker finding."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cvd.data.synthetic import Capture, Material, Raster

RED = (0.95, 0.02, 0.02)
GREY = (0.45, 0.45, 0.45)


def neutral_capture(sun_elevation: float = 89.0, sun_azimuth: float = 180.0) -> Capture:
    """Flat, haze-free, colour-neutral lighting: pixels show albedo (tone-mapped) and nothing else."""
    return Capture(
        sun_azimuth_deg=sun_azimuth,
        sun_elevation_deg=sun_elevation,
        sun_rgb=(0.7, 0.7, 0.7),
        ambient_rgb=(0.3, 0.3, 0.3),
        haze_rgb=(0.7, 0.7, 0.7),
        haze_density=0.0,
        veil=0.0,
        season=0.0,
        white_balance=(1.0, 1.0, 1.0),
        exposure=1.0,
        contrast=1.0,
        saturation=1.0,
        gamma=1.0,
    )


def flat_scene(half: float = 150.0, cell: float = 0.5) -> Raster:
    """Grey flat ground at z = 0 covering [-half, half]^2."""
    n = round(2 * half / cell)
    raster = Raster.flat(-half, -half, n, n, cell, GREY)
    raster.material[:] = Material.PAVED
    return raster


def paint_marker(
    raster: Raster, x: float, y: float, radius: float, rgb=RED, height: float | None = None
) -> None:
    """A square patch centred on (x, y) (a raised block when `height` is given)."""
    box = raster.box(x - radius, x + radius, y - radius, y + radius)
    assert box is not None
    sj, si, xs, ys = box
    mask = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
    if height is None:
        raster.paint_ground(sj, si, mask, rgb, Material.PAVED)
    else:
        raster.paint_solid(sj, si, mask, np.full(mask.shape, height, dtype=np.float32), rgb, Material.BOX)


def red_mask(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., k].astype(np.int32) for k in range(3))
    return (r > 150) & (g < 90) & (b < 90)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(column, row) of a mask's centre in pixel coordinates (pixel centres at +0.5)."""
    rows, cols = np.nonzero(mask)
    assert rows.size, "marker not visible"
    return float(cols.mean() + 0.5), float(rows.mean() + 0.5)


@pytest.fixture
def synth() -> SimpleNamespace:
    """The helpers above, for test modules (which cannot import each other or this file)."""
    return SimpleNamespace(
        neutral_capture=neutral_capture,
        flat_scene=flat_scene,
        paint_marker=paint_marker,
        red_mask=red_mask,
        centroid=centroid,
        RED=RED,
        GREY=GREY,
    )
