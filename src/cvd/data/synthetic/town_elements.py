"""What a street block holds, in world coordinates: the records the fillers make and the painters draw.

Plain frozen records (frames, patches, trees, boxes, buildings, forests) collected in a `Block`,
and the `Placer` that puts rectangles into a block without overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cvd.data.synthetic.palette import RGB, Style
from cvd.data.synthetic.raster import Material


@dataclass(frozen=True)
class Frame:
    """An oriented rectangle: centre, unit axis (cos, sin) and half sizes along u and v."""

    cx: float
    cy: float
    cos: float
    sin: float
    hu: float
    hv: float

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = x - self.cx
        dy = y - self.cy
        return dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos

    def bounds(self, pad: float = 0.0) -> tuple[float, float, float, float]:
        ex = abs(self.hu * self.cos) + abs(self.hv * self.sin) + pad
        ey = abs(self.hu * self.sin) + abs(self.hv * self.cos) + pad
        return self.cx - ex, self.cx + ex, self.cy - ey, self.cy + ey


@dataclass(frozen=True)
class Patch:
    """A flat ground cover inside a block (lawn, parking, pool, path, field strip, sports ground)."""

    frame: Frame
    rgb: RGB
    material: int
    kind: str = "plain"  # plain | ellipse | stripes | parking | pitch | track
    period: float = 0.0


@dataclass(frozen=True)
class Tree:
    """A single tree: a dome of canopy of `radius` over a trunk, `height` at the top."""

    x: float
    y: float
    radius: float
    height: float
    rgb: RGB


@dataclass(frozen=True)
class Solid:
    """A box without facade (car, rooftop unit, container, shed)."""

    frame: Frame
    height: float
    rgb: RGB
    material: int = Material.BOX


@dataclass(frozen=True)
class Building:
    """A footprint with a roof seen from above and a facade (walls, windows) seen from the side."""

    frame: Frame
    eave: float  # wall height above the base, metres
    roof: str  # flat | gable | hip
    ridge: float  # extra height of a pitched roof's ridge above the eave
    roof_rgb: RGB
    wall_rgb: RGB
    window_rgb: RGB
    floor_height: float
    window_spacing: float
    window_width: float
    parapet: bool = False


@dataclass(frozen=True)
class Forest:
    """A closed canopy over a polygon: crowns from noise, painted in one vectorised pass
    (a forest of single trees cost most of the world's rasterisation time)."""

    polygon: tuple[tuple[float, float], ...]  # convex, counter-clockwise, world coordinates
    height: float  # mean canopy height, metres
    rgb: RGB


@dataclass
class Block:
    """The content of one street block, in world coordinates."""

    index: tuple[int, int]
    quad: np.ndarray  # (4, 2) corners, counter-clockwise
    land_use: str
    ground_rgb: RGB
    ground_material: int
    style: Style  # the district's style at the block's centre: palettes and vegetation tint
    patches: list[Patch] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    solids: list[Solid] = field(default_factory=list)
    trees: list[Tree] = field(default_factory=list)
    forests: list[Forest] = field(default_factory=list)


class Placer:
    """Places axis-aligned rectangles in a block's local frame, inside its inset quad, without overlap."""

    def __init__(self, inset_local: np.ndarray, origin: np.ndarray, axis: np.ndarray) -> None:
        self.poly = inset_local
        self.origin = origin
        self.axis = axis
        self.taken: list[tuple[float, float, float, float]] = []
        self.umin, self.vmin = inset_local.min(axis=0)
        self.umax, self.vmax = inset_local.max(axis=0)

    def inside(self, u: float, v: float) -> bool:
        p = self.poly
        for k in range(4):
            a = p[k]
            b = p[(k + 1) % 4]
            if (b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0]) < 0:
                return False
        return True

    def fits(self, cu: float, cv: float, hu: float, hv: float, pad: float = 0.0) -> bool:
        corners = ((cu - hu, cv - hv), (cu + hu, cv - hv), (cu + hu, cv + hv), (cu - hu, cv + hv))
        if not all(self.inside(u, v) for u, v in corners):
            return False
        for a0, a1, b0, b1 in self.taken:
            if cu + hu + pad > a0 and cu - hu - pad < a1 and cv + hv + pad > b0 and cv - hv - pad < b1:
                return False
        return True

    def take(self, cu: float, cv: float, hu: float, hv: float) -> Frame:
        self.taken.append((cu - hu, cu + hu, cv - hv, cv + hv))
        return self.frame(cu, cv, hu, hv)

    def frame(self, cu: float, cv: float, hu: float, hv: float, rotate: bool = False) -> Frame:
        x = self.origin[0] + cu * self.axis[0] - cv * self.axis[1]
        y = self.origin[1] + cu * self.axis[1] + cv * self.axis[0]
        if rotate:
            return Frame(float(x), float(y), float(-self.axis[1]), float(self.axis[0]), hv, hu)
        return Frame(float(x), float(y), float(self.axis[0]), float(self.axis[1]), hu, hv)

    def world(self, u: float, v: float) -> tuple[float, float]:
        return (
            float(self.origin[0] + u * self.axis[0] - v * self.axis[1]),
            float(self.origin[1] + u * self.axis[1] + v * self.axis[0]),
        )

    def free_point(self, rng: np.random.Generator, pad: float, tries: int = 12) -> tuple[float, float] | None:
        for _ in range(tries):
            u = rng.uniform(self.umin, self.umax)
            v = rng.uniform(self.vmin, self.vmax)
            if self.fits(u, v, 0.0, 0.0, pad):
                return u, v
        return None
