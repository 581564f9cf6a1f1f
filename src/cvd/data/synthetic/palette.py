"""Colours of the town: material colours, roof/wall palettes, district styles and colour variation.

A district's `Style` picks one family per palette, so neighbouring blocks look alike and distant
ones differ; `jitter` keeps two objects of one kind from matching exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]

GRASS: RGB = (0.30, 0.42, 0.17)
ASPHALT: RGB = (0.23, 0.23, 0.24)
SIDEWALK: RGB = (0.58, 0.57, 0.54)
CONCRETE: RGB = (0.55, 0.54, 0.50)
MARKING: RGB = (0.88, 0.88, 0.84)
SOIL: RGB = (0.45, 0.37, 0.28)
WATER: RGB = (0.10, 0.19, 0.22)
POOL: RGB = (0.25, 0.62, 0.72)
TRACK: RGB = (0.62, 0.30, 0.24)

PITCHED_ROOFS: tuple[RGB, ...] = (
    (0.56, 0.25, 0.17),
    (0.47, 0.22, 0.16),
    (0.26, 0.26, 0.28),
    (0.36, 0.30, 0.25),
    (0.31, 0.34, 0.40),
    (0.63, 0.36, 0.24),
    (0.18, 0.18, 0.20),
)
FLAT_ROOFS: tuple[RGB, ...] = (
    (0.70, 0.70, 0.68),
    (0.82, 0.82, 0.80),
    (0.45, 0.45, 0.44),
    (0.30, 0.31, 0.32),
    (0.60, 0.56, 0.48),
    (0.33, 0.40, 0.24),
    (0.52, 0.58, 0.62),
)
WALLS: tuple[RGB, ...] = (
    (0.80, 0.77, 0.68),
    (0.62, 0.36, 0.26),
    (0.64, 0.63, 0.60),
    (0.82, 0.72, 0.50),
    (0.90, 0.89, 0.86),
    (0.50, 0.44, 0.38),
    (0.70, 0.56, 0.46),
)
VIVID_ROOFS: tuple[RGB, ...] = (
    (0.20, 0.42, 0.68),
    (0.22, 0.52, 0.36),
    (0.72, 0.20, 0.16),
    (0.84, 0.66, 0.22),
    (0.92, 0.92, 0.94),
    (0.55, 0.62, 0.70),
)
GLASS: tuple[RGB, ...] = ((0.12, 0.16, 0.22), (0.20, 0.27, 0.33), (0.10, 0.11, 0.12), (0.28, 0.36, 0.40))
CARS: tuple[RGB, ...] = (
    (0.90, 0.90, 0.90),
    (0.10, 0.10, 0.11),
    (0.55, 0.56, 0.58),
    (0.70, 0.12, 0.10),
    (0.15, 0.25, 0.55),
    (0.75, 0.74, 0.70),
)
CROPS: tuple[RGB, ...] = ((0.56, 0.50, 0.28), (0.38, 0.47, 0.20), (0.47, 0.38, 0.27), (0.30, 0.40, 0.15))


# District styles: neighbouring blocks share roof, wall and vegetation families, as real towns do;
# places far apart look different overall, so the world is not one repeated texture.
ROOF_FAMILIES: tuple[tuple[RGB, ...], ...] = (
    PITCHED_ROOFS[:2] + PITCHED_ROOFS[5:6],  # terracotta
    PITCHED_ROOFS[2:5] + PITCHED_ROOFS[6:],  # slate and grey
    PITCHED_ROOFS[3:4] + PITCHED_ROOFS[5:6] + ((0.52, 0.42, 0.30),),  # browns
    PITCHED_ROOFS,  # mixed
)
WALL_FAMILIES: tuple[tuple[RGB, ...], ...] = (
    (WALLS[0], WALLS[2], WALLS[4]),  # render and concrete
    (WALLS[1], WALLS[5], WALLS[6]),  # brick
    (WALLS[3], WALLS[0], WALLS[6]),  # sandstone
    WALLS,
)
FLAT_FAMILIES: tuple[tuple[RGB, ...], ...] = (
    FLAT_ROOFS[:2] + FLAT_ROOFS[6:],  # light membranes
    FLAT_ROOFS[2:4] + FLAT_ROOFS[5:6],  # dark gravel and green roofs
    FLAT_ROOFS,
)


@dataclass(frozen=True)
class Style:
    """The look shared by the blocks of a district."""

    vegetation: RGB  # multiplies grass, crops and canopies
    roofs: tuple[RGB, ...]
    walls: tuple[RGB, ...]
    flat_roofs: tuple[RGB, ...]


def jitter(rng: np.random.Generator, rgb: RGB, amount: float = 0.06) -> RGB:
    """Colour variation between objects of one kind, so no two roofs match exactly."""
    scale = 1.0 + rng.uniform(-amount, amount)
    shift = rng.uniform(-amount / 2, amount / 2, size=3)
    return tuple(min(0.98, max(0.02, float(c * scale + t))) for c, t in zip(rgb, shift))  # type: ignore[return-value]


def tint(rgb: RGB, factor: RGB) -> RGB:
    """A colour multiplied channel by channel: a district's vegetation tint on grass, crops, canopies."""
    return (rgb[0] * factor[0], rgb[1] * factor[1], rgb[2] * factor[2])


def pick(rng: np.random.Generator, family: tuple[RGB, ...], everything: tuple[RGB, ...]) -> RGB:
    """Mostly the district's family, sometimes anything (towns are never uniform)."""
    pool = family if rng.random() < 0.8 else everything
    return pool[int(rng.integers(len(pool)))]
