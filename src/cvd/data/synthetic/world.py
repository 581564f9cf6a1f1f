"""The procedural world: terrain, zoning, a jittered street grid and the content of each block.

Everything is a pure function of (seed, world position): the street lattice's intersections
are hashed from their indices, each block's content from its own random stream. A window
of the world can therefore be rasterised anywhere, in any order, and overlapping windows
agree; the whole world never has to be held in memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from cvd.data.synthetic.noise import fbm_scalar, fractal_sum, hash_uniform, hash_uniform_scalar, object_rng
from cvd.data.synthetic.options import SynthOptions
from cvd.data.synthetic.raster import Material, Raster

RGB = tuple[float, float, float]

# Salts keep the noise fields of different purposes independent.
_SALT_TERRAIN, _SALT_ZONING, _SALT_JITTER_X, _SALT_JITTER_Y, _SALT_ROAD, _SALT_TEXTURE = 1, 2, 3, 4, 5, 6
_SALT_STYLE = 7
_SALT_CANOPY = 20

CHUNK_CELLS = 256
"""Side of a cached raster chunk, in cells (128 m at the default 0.5 m cell)."""

LAND_USES = ("residential", "campus", "commercial", "industrial", "park", "field", "forest", "water")

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


def _jitter(rng: np.random.Generator, rgb: RGB, amount: float = 0.06) -> RGB:
    """Colour variation between objects of one kind, so no two roofs match exactly."""
    scale = 1.0 + rng.uniform(-amount, amount)
    tint = rng.uniform(-amount / 2, amount / 2, size=3)
    return tuple(min(0.98, max(0.02, float(c * scale + t))) for c, t in zip(rgb, tint))  # type: ignore[return-value]


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


class _Placer:
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


class World:
    """A procedural town of unbounded extent, defined by a seed and `SynthOptions`."""

    def __init__(self, seed: int, options: SynthOptions | None = None, chunk_capacity: int = 256) -> None:
        self.seed = int(seed)
        self.options = options or SynthOptions()
        self._blocks: dict[tuple[int, int], Block] = {}
        self._nodes: dict[tuple[int, int], np.ndarray] = {}
        self._roads: dict[tuple[int, int, bool], float] = {}
        self._chunks: OrderedDict[tuple[int, int, float], Raster] = OrderedDict()
        self.chunk_capacity = chunk_capacity

    # ----- global fields -------------------------------------------------------------------
    def terrain(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground height (metres) of the gentle undulating terrain."""
        relief = self.options.terrain_relief
        return relief * (_grid_fbm(x, y, 450.0, self.seed, _SALT_TERRAIN, 2) - 0.5)

    def urbanity(self, x: float, y: float) -> float:
        """0 = countryside .. 1 = town centre; neighbouring blocks share it, so styles cluster."""
        raw = fbm_scalar(float(x), float(y), self.options.zoning_scale, self.seed, _SALT_ZONING, octaves=2)
        return float(np.clip((raw - 0.5) * 2.4 + 0.62 + self.options.urbanity_bias, 0.0, 1.0))

    def style(self, x: float, y: float) -> Style:
        """District style at a point: smooth noise picks the vegetation tint and material families."""
        scale = self.options.zoning_scale * 0.6
        lush = fbm_scalar(x, y, scale, self.seed, _SALT_STYLE, octaves=2)
        t = float(np.clip((lush - 0.5) * 2.5 + 0.5, 0.0, 1.0))
        dry, wet = np.array([1.22, 1.05, 0.70]), np.array([0.80, 1.02, 1.12])
        strength = self.options.style_strength
        tint = tuple(float(1.0 + strength * (v - 1.0)) for v in dry + (wet - dry) * t)

        def pick(salt: int, families: tuple) -> tuple:
            value = fbm_scalar(x, y, scale, self.seed, _SALT_STYLE + salt, octaves=2)
            return families[
                min(len(families) - 1, int(np.clip((value - 0.5) * 2.5 + 0.5, 0, 0.999) * len(families)))
            ]

        return Style(tint, pick(1, ROOF_FAMILIES), pick(2, WALL_FAMILIES), pick(3, FLAT_FAMILIES))  # type: ignore[arg-type]

    def intersection(self, i: int, j: int) -> np.ndarray:
        """World position of street-lattice node (i, j)."""
        node = self._nodes.get((i, j))
        if node is None:
            size = self.options.block_size
            jx = hash_uniform_scalar(i, j, self.seed, _SALT_JITTER_X) - 0.5
            jy = hash_uniform_scalar(i, j, self.seed, _SALT_JITTER_Y) - 0.5
            node = np.array([(i + 0.36 * jx) * size, (j + 0.36 * jy) * size], dtype=np.float64)
            self._nodes[(i, j)] = node
        return node

    def road_width(self, i: int, j: int, horizontal: bool) -> float:
        """Width of the street from node (i, j) east (horizontal) or north; 0 where there is none."""
        key = (i, j, horizontal)
        if key not in self._roads:
            self._roads[key] = self._road_width(i, j, horizontal)
        return self._roads[key]

    def _road_width(self, i: int, j: int, horizontal: bool) -> float:
        line = j if horizontal else i
        salt = _SALT_ROAD * 10 + (1 if horizontal else 2)
        major = hash_uniform_scalar(line, 0, self.seed, salt) < 0.28
        a = self.intersection(i, j)
        b = self.intersection(i + 1, j) if horizontal else self.intersection(i, j + 1)
        mid = (a + b) / 2
        urban = self.urbanity(mid[0], mid[1])
        removed = hash_uniform_scalar(i, j, self.seed, salt + 7) < (0.06 + 0.25 * (1 - urban))
        if removed and not major:
            return 0.0
        if major:
            return 15.0 if urban > 0.45 else 10.0
        return 9.0 if urban > 0.35 else 6.5

    # ----- blocks --------------------------------------------------------------------------
    def block(self, i: int, j: int) -> Block:
        """Content of block (i, j), generated once and cached."""
        key = (i, j)
        if key not in self._blocks:
            self._blocks[key] = self._make_block(i, j)
        return self._blocks[key]

    def _inset(self, quad: np.ndarray, margins: list[float]) -> np.ndarray:
        lines = []
        for k in range(4):
            a = quad[k]
            b = quad[(k + 1) % 4]
            d = (b - a) / np.linalg.norm(b - a)
            n = np.array([-d[1], d[0]])
            lines.append((a + n * margins[k], d))
        corners = []
        for k in range(4):
            p1, d1 = lines[k - 1]
            p2, d2 = lines[k]
            mat = np.array([[d1[0], -d2[0]], [d1[1], -d2[1]]])
            t = np.linalg.solve(mat, p2 - p1)
            corners.append(p1 + d1 * t[0])
        return np.asarray(corners)

    def _make_block(self, i: int, j: int) -> Block:
        quad = np.stack(
            [
                self.intersection(i, j),
                self.intersection(i + 1, j),
                self.intersection(i + 1, j + 1),
                self.intersection(i, j + 1),
            ]
        )
        widths = [
            self.road_width(i, j, True),
            self.road_width(i + 1, j, False),
            self.road_width(i, j + 1, True),
            self.road_width(i, j, False),
        ]
        margins = [w / 2 + 2.5 if w > 0 else 1.0 for w in widths]
        inset = self._inset(quad, margins)
        centre = inset.mean(axis=0)
        axis = (quad[1] - quad[0]) + (quad[2] - quad[3])
        axis = axis / np.linalg.norm(axis)
        rel = inset - centre
        local = np.stack([rel @ axis, rel @ np.array([-axis[1], axis[0]])], axis=1)
        placer = _Placer(local, centre, axis)
        rng = object_rng(self.seed, 101, i, j)
        urban = self.urbanity(*quad.mean(axis=0))
        style = self.style(*quad.mean(axis=0))
        use = self._choose_land_use(rng, urban)
        block = Block(
            index=(i, j),
            quad=quad,
            land_use=use,
            ground_rgb=_jitter(rng, _tint(GRASS, style.vegetation), 0.1),
            ground_material=Material.GRASS,
            style=style,
        )
        getattr(self, f"_fill_{use}")(block, placer, rng, urban)
        return block

    @staticmethod
    def _choose_land_use(rng: np.random.Generator, urban: float) -> str:
        if urban > 0.7:
            weights = (0.15, 0.35, 0.35, 0.05, 0.10, 0.0, 0.0, 0.0)
        elif urban > 0.5:
            weights = (0.42, 0.25, 0.10, 0.10, 0.10, 0.0, 0.03, 0.0)
        elif urban > 0.32:
            weights = (0.40, 0.10, 0.0, 0.12, 0.13, 0.12, 0.10, 0.03)
        else:
            weights = (0.12, 0.0, 0.0, 0.03, 0.05, 0.45, 0.28, 0.07)
        w = np.asarray(weights, dtype=np.float64)
        return LAND_USES[int(rng.choice(len(LAND_USES), p=w / w.sum()))]

    # ----- land uses -----------------------------------------------------------------------
    def _house(
        self, style: Style, placer: _Placer, rng: np.random.Generator, frame: Frame, palette: RGB
    ) -> Building:
        roof = str(rng.choice(["gable", "hip", "flat"], p=[0.55, 0.35, 0.10]))
        floors = int(rng.integers(1, 3))
        eave = floors * 2.9 + rng.uniform(0.2, 0.8)
        ridge = 0.0 if roof == "flat" else min(frame.hu, frame.hv) * rng.uniform(0.45, 0.8)
        if frame.hv > frame.hu:  # ridge along the long side
            frame = Frame(frame.cx, frame.cy, -frame.sin, frame.cos, frame.hv, frame.hu)
        roof_rgb = _jitter(
            rng, palette if roof != "flat" else self._pick(rng, style.flat_roofs, FLAT_ROOFS), 0.08
        )
        return Building(
            frame=frame,
            eave=eave,
            roof=roof,
            ridge=ridge,
            roof_rgb=roof_rgb,
            wall_rgb=_jitter(rng, self._pick(rng, style.walls, WALLS), 0.05),
            window_rgb=GLASS[int(rng.integers(len(GLASS)))],
            floor_height=2.9,
            window_spacing=float(rng.uniform(2.8, 4.0)),
            window_width=float(rng.uniform(0.35, 0.55)),
            parapet=roof == "flat",
        )

    def _big_building(self, style: Style, rng: np.random.Generator, frame: Frame, eave: float) -> Building:
        roof = str(rng.choice(["flat", "hip", "gable"], p=[0.78, 0.14, 0.08]))
        ridge = 0.0 if roof == "flat" else min(frame.hu, frame.hv) * rng.uniform(0.25, 0.45)
        if frame.hv > frame.hu and roof != "flat":
            frame = Frame(frame.cx, frame.cy, -frame.sin, frame.cos, frame.hv, frame.hu)
        palette = style.flat_roofs if roof == "flat" else style.roofs
        roof_rgb = self._pick(rng, palette, FLAT_ROOFS if roof == "flat" else PITCHED_ROOFS)
        if rng.random() < self.options.vivid_roofs:  # painted metal and membrane roofs: landmarks
            roof_rgb = VIVID_ROOFS[int(rng.integers(len(VIVID_ROOFS)))]
        ribbon = rng.random() < 0.35
        return Building(
            frame=frame,
            eave=eave,
            roof=roof,
            ridge=ridge,
            roof_rgb=_jitter(rng, roof_rgb, 0.08),
            wall_rgb=_jitter(rng, self._pick(rng, style.walls, WALLS), 0.05),
            window_rgb=GLASS[int(rng.integers(len(GLASS)))],
            floor_height=float(rng.uniform(3.3, 4.2)),
            window_spacing=float(rng.uniform(2.4, 3.6)),
            window_width=0.92 if ribbon else float(rng.uniform(0.4, 0.65)),
            parapet=roof == "flat",
        )

    def _rooftop(self, block: Block, rng: np.random.Generator, b: Building) -> None:
        """Rooftop units on flat roofs: small boxes that break up large uniform roofs."""
        if b.roof != "flat":
            return
        count = int(rng.integers(0, 2 + int(b.frame.hu * b.frame.hv / 250)))
        for _ in range(min(count, 8)):
            hu = rng.uniform(0.8, 2.5)
            hv = rng.uniform(0.8, 2.0)
            cu = rng.uniform(-b.frame.hu + hu + 1.5, b.frame.hu - hu - 1.5) if b.frame.hu > hu + 2 else 0.0
            cv = rng.uniform(-b.frame.hv + hv + 1.5, b.frame.hv - hv - 1.5) if b.frame.hv > hv + 2 else 0.0
            x = b.frame.cx + cu * b.frame.cos - cv * b.frame.sin
            y = b.frame.cy + cu * b.frame.sin + cv * b.frame.cos
            frame = Frame(x, y, b.frame.cos, b.frame.sin, hu, hv)
            block.solids.append(
                Solid(frame, -(b.eave + rng.uniform(1.0, 2.5)), _jitter(rng, (0.62, 0.62, 0.6), 0.1))
            )

    def _scatter_trees(
        self, block: Block, placer: _Placer, rng: np.random.Generator, count: int, pad: float = 2.5
    ) -> None:
        for _ in range(count):
            point = placer.free_point(rng, pad)
            if point is None:
                continue
            x, y = placer.world(*point)
            block.trees.append(self._tree(block.style, rng, x, y))

    @staticmethod
    def _pick(rng: np.random.Generator, family: tuple[RGB, ...], everything: tuple[RGB, ...]) -> RGB:
        """Mostly the district's family, sometimes anything (towns are never uniform)."""
        pool = family if rng.random() < 0.8 else everything
        return pool[int(rng.integers(len(pool)))]

    def _tree(self, style: Style, rng: np.random.Generator, x: float, y: float, scale: float = 1.0) -> Tree:
        green = _jitter(rng, _tint((0.16, 0.29, 0.10), style.vegetation), 0.18)
        return Tree(x, y, float(rng.uniform(2.2, 5.0) * scale), float(rng.uniform(7.0, 16.0) * scale), green)

    def _parking(self, block: Block, placer: _Placer, rng: np.random.Generator, hu: float, hv: float) -> None:
        for _ in range(10):
            cu = (
                rng.uniform(placer.umin + hu, placer.umax - hu) if placer.umax - placer.umin > 2 * hu else 0.0
            )
            cv = (
                rng.uniform(placer.vmin + hv, placer.vmax - hv) if placer.vmax - placer.vmin > 2 * hv else 0.0
            )
            if placer.fits(cu, cv, hu, hv, 2.0):
                break
        else:
            return
        frame = placer.take(cu, cv, hu, hv)
        block.patches.append(Patch(frame, _jitter(rng, ASPHALT, 0.05), Material.ROAD, "parking", 2.6))
        occupancy = rng.uniform(0.3, 0.9)
        rows = int((2 * hv) // 11)
        for r in range(rows):
            v_row = cv - hv + 5.5 + 11 * r
            for side in (-1, 1):
                u = cu - hu + 1.3
                while u < cu + hu - 1.3:
                    if rng.random() < occupancy:
                        car = placer.frame(u, v_row + side * 2.9, 0.9, 2.2)
                        block.solids.append(
                            Solid(car, 1.45, _jitter(rng, CARS[int(rng.integers(len(CARS)))], 0.05))
                        )
                    u += 2.6

    def _fill_residential(
        self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float
    ) -> None:
        palette = self._pick(rng, block.style.roofs, PITCHED_ROOFS)
        depth = min(32.0, (placer.vmax - placer.vmin) / 2)
        for side in (-1, 1):
            u = placer.umin + rng.uniform(0, 4)
            while u < placer.umax - 8:
                lot = rng.uniform(15, 22)
                hu = rng.uniform(4.0, min(7.5, lot / 2 - 1.5))
                hv = rng.uniform(4.0, 6.0)
                setback = rng.uniform(4, 8)
                cv = placer.vmin + setback + hv if side < 0 else placer.vmax - setback - hv
                cu = u + lot / 2 + rng.uniform(-1.5, 1.5)
                if placer.fits(cu, cv, hu, hv, 1.5):
                    local_palette = (
                        palette if rng.random() < 0.6 else self._pick(rng, block.style.roofs, PITCHED_ROOFS)
                    )
                    frame = placer.take(cu, cv, hu, hv)
                    block.buildings.append(self._house(block.style, placer, rng, frame, local_palette))
                    lawn = placer.frame(
                        u + lot / 2,
                        placer.vmin + depth / 2 if side < 0 else placer.vmax - depth / 2,
                        lot / 2 - 0.3,
                        depth / 2,
                    )
                    block.patches.insert(0, Patch(lawn, _jitter(rng, block.ground_rgb, 0.08), Material.GRASS))
                    drive_v = (placer.vmin + setback / 2) if side < 0 else (placer.vmax - setback / 2)
                    drive = placer.frame(cu + hu - 1.8, drive_v, 1.5, setback / 2 + 0.2)
                    block.patches.append(Patch(drive, _jitter(rng, CONCRETE, 0.05), Material.PAVED))
                    if rng.random() < 0.15:
                        pv = cv - side * (hv + 6.5)
                        if placer.fits(cu, pv, 3.5, 2.0, 0.5):
                            block.patches.append(Patch(placer.take(cu, pv, 3.5, 2.0), POOL, Material.WATER))
                    for _ in range(int(rng.integers(0, 4))):
                        tu = u + rng.uniform(2, lot - 2)
                        tv = cv - side * (hv + rng.uniform(3, depth - 2 * hv - 2 + 3))
                        if placer.fits(tu, tv, 0, 0, 2.5):
                            block.trees.append(self._tree(block.style, rng, *placer.world(tu, tv), scale=0.9))
                    if rng.random() < 0.25:
                        su = u + rng.uniform(3, lot - 3)
                        sv = cv - side * (hv + rng.uniform(6, 12))
                        if placer.fits(su, sv, 1.5, 1.2, 0.5):
                            block.solids.append(
                                Solid(
                                    placer.take(su, sv, 1.5, 1.2), 2.3, _jitter(rng, (0.5, 0.45, 0.4), 0.15)
                                )
                            )
                u += lot
        self._scatter_trees(block, placer, rng, int(rng.integers(3, 12)))

    def _fill_campus(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        if rng.random() < 0.3:
            hu, hv = 48.0, 30.0
            if placer.fits(0.0, 0.0, hu, hv, 2.0):
                placer.take(0.0, 0.0, hu, hv)
                block.patches.append(Patch(placer.frame(0.0, 0.0, hu, hv), TRACK, Material.PAVED, "track"))
        for _ in range(int(rng.integers(2, 6))):
            hu = rng.uniform(12, 35)
            hv = rng.uniform(8, 17)
            if rng.random() < 0.5:
                hu, hv = hv, hu
            for _ in range(8):
                cu = (
                    rng.uniform(placer.umin + hu, placer.umax - hu)
                    if placer.umax - placer.umin > 2 * hu
                    else 0.0
                )
                cv = (
                    rng.uniform(placer.vmin + hv, placer.vmax - hv)
                    if placer.vmax - placer.vmin > 2 * hv
                    else 0.0
                )
                if placer.fits(cu, cv, hu, hv, 7.0):
                    frame = placer.take(cu, cv, hu, hv)
                    b = self._big_building(block.style, rng, frame, float(rng.uniform(9, 26 + 12 * urban)))
                    block.buildings.append(b)
                    self._rooftop(block, rng, b)
                    if rng.random() < 0.4:  # an L-shaped wing
                        wu = cu + hu + rng.uniform(-hu * 0.5, 0) if rng.random() < 0.5 else cu - hu
                        wv = cv + hv + rng.uniform(6, 10)
                        whu, whv = rng.uniform(6, 10), rng.uniform(6, 10)
                        if placer.fits(wu, wv, whu, whv, 1.0):
                            wing = placer.take(wu, wv, whu, whv)
                            block.buildings.append(
                                self._big_building(block.style, rng, wing, b.eave * rng.uniform(0.55, 1.0))
                            )
                    break
        if rng.random() < 0.7:
            self._parking(block, placer, rng, rng.uniform(14, 26), rng.uniform(11, 17))
        for _ in range(int(rng.integers(1, 4))):
            point = placer.free_point(rng, 3.0)
            if point is not None:
                length = rng.uniform(15, 45)
                path = placer.frame(point[0], point[1], length, 1.4, rotate=bool(rng.random() < 0.5))
                block.patches.append(Patch(path, _jitter(rng, SIDEWALK, 0.05), Material.PAVED))
        self._scatter_trees(block, placer, rng, int(rng.integers(10, 35)))

    def _fill_commercial(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        block.ground_rgb = _jitter(rng, CONCRETE, 0.08)
        block.ground_material = Material.PAVED
        for _ in range(int(rng.integers(3, 9))):
            hu = rng.uniform(8, 22)
            hv = rng.uniform(8, 18)
            for _ in range(8):
                cu = (
                    rng.uniform(placer.umin + hu, placer.umax - hu)
                    if placer.umax - placer.umin > 2 * hu
                    else 0.0
                )
                cv = (
                    rng.uniform(placer.vmin + hv, placer.vmax - hv)
                    if placer.vmax - placer.vmin > 2 * hv
                    else 0.0
                )
                if placer.fits(cu, cv, hu, hv, 4.0):
                    frame = placer.take(cu, cv, hu, hv)
                    eave = float(rng.uniform(8, 18 + 30 * max(0.0, urban - 0.5)))
                    b = self._big_building(block.style, rng, frame, eave)
                    block.buildings.append(b)
                    self._rooftop(block, rng, b)
                    break
        for _ in range(int(rng.integers(0, 3))):
            self._parking(block, placer, rng, rng.uniform(10, 22), rng.uniform(11, 17))
        self._scatter_trees(block, placer, rng, int(rng.integers(0, 10)))

    def _fill_industrial(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        block.ground_rgb = _jitter(rng, SOIL if rng.random() < 0.3 else CONCRETE, 0.08)
        block.ground_material = Material.SOIL if block.ground_rgb[0] < 0.5 else Material.PAVED
        for _ in range(int(rng.integers(1, 4))):
            hu = rng.uniform(18, 42)
            hv = rng.uniform(12, 24)
            for _ in range(8):
                cu = (
                    rng.uniform(placer.umin + hu, placer.umax - hu)
                    if placer.umax - placer.umin > 2 * hu
                    else 0.0
                )
                cv = (
                    rng.uniform(placer.vmin + hv, placer.vmax - hv)
                    if placer.vmax - placer.vmin > 2 * hv
                    else 0.0
                )
                if placer.fits(cu, cv, hu, hv, 6.0):
                    frame = placer.take(cu, cv, hu, hv)
                    b = self._big_building(block.style, rng, frame, float(rng.uniform(7, 13)))
                    block.buildings.append(b)
                    self._rooftop(block, rng, b)
                    break
        for _ in range(int(rng.integers(4, 20))):
            point = placer.free_point(rng, 2.0)
            if point is None:
                continue
            colour = _jitter(
                rng,
                ((0.6, 0.2, 0.15), (0.15, 0.3, 0.55), (0.7, 0.6, 0.2), (0.4, 0.45, 0.4))[
                    int(rng.integers(4))
                ],
            )
            block.solids.append(Solid(placer.frame(point[0], point[1], 6.1, 1.25), 2.6, colour))
        if rng.random() < 0.5:
            self._parking(block, placer, rng, rng.uniform(10, 20), rng.uniform(11, 17))
        self._scatter_trees(block, placer, rng, int(rng.integers(0, 8)))

    def _fill_park(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        if rng.random() < 0.5:
            hu = rng.uniform(12, 28)
            hv = rng.uniform(9, 20)
            if placer.fits(0.0, 0.0, hu, hv, 3.0):
                block.patches.append(
                    Patch(placer.take(0.0, 0.0, hu, hv), _jitter(rng, WATER, 0.1), Material.WATER, "ellipse")
                )
        elif rng.random() < 0.5:
            hu, hv = 34.0, 22.0
            if placer.fits(0.0, 0.0, hu, hv, 3.0):
                block.patches.append(
                    Patch(placer.take(0.0, 0.0, hu, hv), (0.30, 0.50, 0.20), Material.GRASS, "pitch")
                )
        for _ in range(int(rng.integers(2, 5))):
            point = placer.free_point(rng, 3.0)
            if point is not None:
                path = placer.frame(
                    point[0], point[1], rng.uniform(20, 50), 1.2, rotate=bool(rng.random() < 0.5)
                )
                block.patches.append(Patch(path, _jitter(rng, SOIL, 0.05), Material.SOIL))
        for _ in range(int(rng.integers(3, 7))):
            centre = placer.free_point(rng, 4.0)
            if centre is None:
                continue
            for _ in range(int(rng.integers(4, 14))):
                u = centre[0] + rng.normal(0, 7)
                v = centre[1] + rng.normal(0, 7)
                if placer.fits(u, v, 0, 0, 2.0):
                    block.trees.append(self._tree(block.style, rng, *placer.world(u, v)))

    def _fill_field(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        crop = _jitter(rng, _tint(CROPS[int(rng.integers(len(CROPS)))], block.style.vegetation), 0.08)
        block.ground_rgb = crop
        block.ground_material = Material.FIELD
        hu = (placer.umax - placer.umin) / 2 + 5
        hv = (placer.vmax - placer.vmin) / 2 + 5
        frame = placer.frame(0.0, 0.0, hu, hv, rotate=bool(rng.random() < 0.5))
        block.patches.append(Patch(frame, crop, Material.FIELD, "stripes", float(rng.uniform(2.0, 5.0))))
        if rng.random() < 0.4:  # a second crop on half of the block
            half = placer.frame(hu / 2, 0.0, hu / 2, hv)
            other = _jitter(rng, CROPS[int(rng.integers(len(CROPS)))], 0.08)
            block.patches.append(Patch(half, other, Material.FIELD, "stripes", float(rng.uniform(2.0, 5.0))))
        edge = placer.poly
        for k in range(4):
            if rng.random() < 0.5:
                continue
            a, b = edge[k], edge[(k + 1) % 4]
            for t in np.arange(0.05, 0.95, rng.uniform(0.05, 0.12)):
                p = a + (b - a) * t
                x, y = placer.world(float(p[0]), float(p[1]))
                block.trees.append(self._tree(block.style, rng, x, y, scale=0.8))
        if rng.random() < 0.3:
            point = placer.free_point(rng, 10.0)
            if point is not None:
                frame = placer.take(point[0], point[1], rng.uniform(8, 14), rng.uniform(5, 8))
                block.buildings.append(
                    self._house(
                        block.style, placer, rng, frame, self._pick(rng, block.style.roofs, PITCHED_ROOFS)
                    )
                )

    def _fill_forest(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        block.ground_rgb = _jitter(rng, _tint((0.20, 0.27, 0.13), block.style.vegetation), 0.08)
        polygon = tuple(placer.world(float(u), float(v)) for u, v in placer.poly)
        green = _jitter(rng, _tint((0.15, 0.27, 0.10), block.style.vegetation), 0.12)
        block.forests.append(Forest(polygon, float(rng.uniform(11.0, 17.0)), green))
        for _ in range(int(rng.integers(4, 12))):  # a few taller trees standing out of the canopy
            point = placer.free_point(rng, 0.0)
            if point is not None:
                block.trees.append(self._tree(block.style, rng, *placer.world(*point), scale=1.4))

    def _fill_water(self, block: Block, placer: _Placer, rng: np.random.Generator, urban: float) -> None:
        hu = (placer.umax - placer.umin) / 2 * rng.uniform(0.7, 0.95)
        hv = (placer.vmax - placer.vmin) / 2 * rng.uniform(0.7, 0.95)
        block.patches.append(
            Patch(placer.take(0.0, 0.0, hu, hv), _jitter(rng, WATER, 0.1), Material.WATER, "ellipse")
        )
        self._scatter_trees(block, placer, rng, int(rng.integers(5, 20)))

    # ----- rasterisation -------------------------------------------------------------------
    def window(
        self, x_min: float, y_min: float, x_max: float, y_max: float, cell: float | None = None
    ) -> Raster:
        """The world inside [x_min, x_max] x [y_min, y_max], assembled from cached chunks.

        Chunks sit on a global lattice, so a cell has the same content in every window.
        """
        cell = float(cell or self.options.cell_size)
        n = CHUNK_CELLS
        ci0 = math.floor(x_min / cell / n)
        cj0 = math.floor(y_min / cell / n)
        ci1 = math.floor(x_max / cell / n)
        cj1 = math.floor(y_max / cell / n)
        i0 = math.floor(x_min / cell)
        j0 = math.floor(y_min / cell)
        nx = math.ceil(x_max / cell) - i0
        ny = math.ceil(y_max / cell) - j0
        out = Raster.flat(i0 * cell, j0 * cell, nx, ny, cell, GRASS)
        for cj in range(cj0, cj1 + 1):
            for ci in range(ci0, ci1 + 1):
                chunk = self._chunk(ci, cj, cell)
                # overlap of the chunk (cells ci*n .. ci*n+n) with the window (i0 .. i0+nx)
                a0 = max(ci * n, i0)
                a1 = min(ci * n + n, i0 + nx)
                b0 = max(cj * n, j0)
                b1 = min(cj * n + n, j0 + ny)
                if a0 >= a1 or b0 >= b1:
                    continue
                dst = (slice(b0 - j0, b1 - j0), slice(a0 - i0, a1 - i0))
                src = (slice(b0 - cj * n, b1 - cj * n), slice(a0 - ci * n, a1 - ci * n))
                out.height[dst] = chunk.height[src]
                out.albedo[dst] = chunk.albedo[src]
                out.material[dst] = chunk.material[src]
                offset = len(out.facades)
                ids = chunk.building[src]
                out.building[dst] = np.where(ids >= 0, ids + offset, -1)
                for name in out.facades.__dataclass_fields__:
                    getattr(out.facades, name).extend(getattr(chunk.facades, name))
        return out

    def _chunk(self, ci: int, cj: int, cell: float) -> Raster:
        key = (ci, cj, cell)
        chunk = self._chunks.get(key)
        if chunk is None:
            n = CHUNK_CELLS
            chunk = self.rasterize(
                ci * n * cell, cj * n * cell, (ci + 1) * n * cell, (cj + 1) * n * cell, cell
            )
            self._chunks[key] = chunk
            while len(self._chunks) > self.chunk_capacity:
                self._chunks.pop(next(iter(self._chunks)))
        else:
            self._chunks.move_to_end(key)
        return chunk

    def rasterize(
        self, x_min: float, y_min: float, x_max: float, y_max: float, cell: float | None = None
    ) -> Raster:
        """The world inside [x_min, x_max] x [y_min, y_max], snapped to the global cell lattice (no cache)."""
        cell = float(cell or self.options.cell_size)
        i0 = (
            round(x_min / cell)
            if abs(x_min / cell - round(x_min / cell)) < 1e-6
            else math.floor(x_min / cell)
        )
        j0 = (
            round(y_min / cell)
            if abs(y_min / cell - round(y_min / cell)) < 1e-6
            else math.floor(y_min / cell)
        )
        nx = math.ceil(x_max / cell - 1e-6) - i0
        ny = math.ceil(y_max / cell - 1e-6) - j0
        raster = Raster.flat(i0 * cell, j0 * cell, nx, ny, cell, GRASS)
        xs, ys = raster.cell_centres()
        terrain = self.terrain(xs, ys)
        raster.height[:] = terrain
        size = self.options.block_size
        bi0 = math.floor(x_min / size) - 1
        bi1 = math.ceil(x_max / size) + 1
        bj0 = math.floor(y_min / size) - 1
        bj1 = math.ceil(y_max / size) + 1
        blocks = [self.block(i, j) for j in range(bj0, bj1) for i in range(bi0, bi1)]
        for block in blocks:
            self._paint_block_ground(raster, block)
        self._paint_roads(raster, bi0, bi1, bj0, bj1)
        for block in blocks:
            for patch in block.patches:
                self._paint_patch(raster, patch)
        for block in blocks:
            for building in block.buildings:
                self._paint_building(raster, building)
            for solid in block.solids:
                self._paint_solid(raster, solid)
            for forest in block.forests:
                self._paint_forest(raster, forest)
            for tree in block.trees:
                self._paint_tree(raster, tree)
        self._texture(raster, xs, ys)
        return raster

    def ground_height(self, x: float, y: float) -> float:
        """Terrain height (m) at one point: the ground a camera's altitude is measured from."""
        return self._base_height(x, y)

    def _base_height(self, x: float, y: float) -> float:
        relief = self.options.terrain_relief
        return relief * (fbm_scalar(x, y, 450.0, self.seed, _SALT_TERRAIN, octaves=2) - 0.5)

    def _paint_block_ground(self, raster: Raster, block: Block) -> None:
        q = block.quad
        box = raster.box(q[:, 0].min(), q[:, 0].max(), q[:, 1].min(), q[:, 1].max())
        if box is None:
            return
        sj, si, xs, ys = box
        inside = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
        for k in range(4):
            a = q[k]
            b = q[(k + 1) % 4]
            inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
        raster.paint_ground(sj, si, inside, block.ground_rgb, block.ground_material)

    def _paint_roads(self, raster: Raster, bi0: int, bi1: int, bj0: int, bj1: int) -> None:
        for j in range(bj0, bj1 + 1):
            for i in range(bi0, bi1 + 1):
                for horizontal in (True, False):
                    width = self.road_width(i, j, horizontal)
                    if width <= 0:
                        continue
                    a = self.intersection(i, j)
                    b = self.intersection(i + 1, j) if horizontal else self.intersection(i, j + 1)
                    self._paint_road(raster, a, b, width)

    def _paint_road(self, raster: Raster, a: np.ndarray, b: np.ndarray, width: float) -> None:
        pad = width / 2 + 2.5
        box = raster.box(
            min(a[0], b[0]) - pad, max(a[0], b[0]) + pad, min(a[1], b[1]) - pad, max(a[1], b[1]) + pad
        )
        if box is None:
            return
        sj, si, xs, ys = box
        d = b - a
        length = float(np.linalg.norm(d))
        d = d / length
        along = (xs - a[0]) * d[0] + (ys - a[1]) * d[1]
        across = -(xs - a[0]) * d[1] + (ys - a[1]) * d[0]
        clamped = np.clip(along, 0.0, length)
        dist = np.hypot(along - clamped, across)
        raster.paint_ground(sj, si, dist < pad, SIDEWALK, Material.PAVED)
        raster.paint_ground(sj, si, dist < width / 2, ASPHALT, Material.ROAD)
        inner = (along > 8.0) & (along < length - 8.0)
        dashes = np.abs(across) < 0.18
        if width >= 12:
            dashes = (np.abs(np.abs(across) - 0.35) < 0.15) | (
                (np.abs(np.abs(across) - width / 4) < 0.12) & (np.mod(along, 9.0) < 4.5)
            )
        else:
            dashes &= np.mod(along, 6.0) < 3.0
        raster.paint_ground(sj, si, dashes & inner, MARKING, Material.MARKING)

    def _paint_patch(self, raster: Raster, patch: Patch) -> None:
        f = patch.frame
        box = raster.box(*f.bounds())
        if box is None:
            return
        sj, si, xs, ys = box
        u, v = f.local(xs, ys)
        if patch.kind in ("ellipse", "track"):
            if patch.kind == "ellipse":
                inside = (u / f.hu) ** 2 + (v / f.hv) ** 2 < 1.0
            else:
                straight = f.hu - f.hv
                du = np.maximum(np.abs(u) - straight, 0.0)
                r = np.hypot(du, v)
                inside = r < f.hv
                raster.paint_ground(sj, si, inside, patch.rgb, patch.material)
                raster.paint_ground(sj, si, r < f.hv - 7.0, (0.30, 0.50, 0.20), Material.GRASS)
                lanes = inside & (r > f.hv - 7.0) & (np.mod(r, 1.2) < 0.12)
                raster.paint_ground(sj, si, lanes, MARKING, Material.MARKING)
                return
            if patch.material == Material.WATER:
                # a flat surface below the banks; from the centre only, so every chunk agrees
                level = (
                    self._base_height(f.cx, f.cy)
                    - 0.25 * self.options.terrain_relief * min(1.0, f.hu / 40)
                    - 0.4
                )
                sub = raster.height[sj, si]
                sub[inside] = np.minimum(sub[inside], level)
        else:
            inside = (np.abs(u) < f.hu) & (np.abs(v) < f.hv)
        raster.paint_ground(sj, si, inside, patch.rgb, patch.material)
        if patch.kind == "stripes":
            band = np.mod(u, patch.period) < patch.period / 2
            darker = tuple(c * 0.86 for c in patch.rgb)
            raster.paint_ground(sj, si, inside & band, darker, patch.material)  # type: ignore[arg-type]
        elif patch.kind == "parking":
            rows = np.mod(v + f.hv, 11.0)
            stall = (np.mod(u + f.hu, patch.period) < 0.15) & ((rows < 5.0) | (rows > 6.0))
            raster.paint_ground(sj, si, inside & stall, MARKING, Material.MARKING)
        elif patch.kind == "pitch":
            lines = (
                (np.abs(np.abs(u) - f.hu + 1.0) < 0.15)
                | (np.abs(np.abs(v) - f.hv + 1.0) < 0.15)
                | (np.abs(u) < 0.12)
            )
            lines &= (np.abs(u) < f.hu - 0.9) & (np.abs(v) < f.hv - 0.9)
            raster.paint_ground(sj, si, inside & lines, MARKING, Material.MARKING)

    def _paint_building(self, raster: Raster, b: Building) -> None:
        f = b.frame
        box = raster.box(*f.bounds())
        if box is None:
            return
        sj, si, xs, ys = box
        u, v = f.local(xs, ys)
        inside = (np.abs(u) < f.hu) & (np.abs(v) < f.hv)
        if not inside.any():
            return
        base = self._base_height(f.cx, f.cy)
        eave = base + b.eave
        if b.roof == "gable":
            top = eave + b.ridge * (1.0 - np.abs(v) / f.hv)
        elif b.roof == "hip":
            top = eave + b.ridge * np.minimum(1.0 - np.abs(v) / f.hv, (f.hu - np.abs(u)) / f.hv)
        else:
            edge = (np.abs(u) > f.hu - 0.6) | (np.abs(v) > f.hv - 0.6)
            top = np.where(edge & b.parapet, eave + 0.8, eave)
        top = np.maximum(top, eave).astype(np.float32)
        roof_rgb = np.empty((*top.shape, 3), dtype=np.float32)
        roof_rgb[:] = b.roof_rgb
        if b.roof != "flat":
            # a thin lighter ridge line and darker eaves read as pitched roofs from above
            ridge_line = np.abs(v) < 0.45 if b.roof == "gable" else np.zeros_like(inside)
            roof_rgb[ridge_line] *= 1.15
            roof_rgb[(np.abs(v) > f.hv - 0.6) | (np.abs(u) > f.hu - 0.6)] *= 0.8
        elif b.parapet:
            roof_rgb[(np.abs(u) > f.hu - 0.6) | (np.abs(v) > f.hv - 0.6)] *= 1.12
        ident = raster.facades.add(
            cx=f.cx,
            cy=f.cy,
            cos=f.cos,
            sin=f.sin,
            half_u=f.hu,
            half_v=f.hv,
            base=base,
            eave=eave,
            floor_height=b.floor_height,
            window_spacing=b.window_spacing,
            window_width=b.window_width,
            wall_rgb=b.wall_rgb,
            window_rgb=b.window_rgb,
        )
        raster.paint_solid(sj, si, inside, top, np.clip(roof_rgb, 0, 1), Material.ROOF, ident)

    def _paint_solid(self, raster: Raster, s: Solid) -> None:
        f = s.frame
        box = raster.box(*f.bounds())
        if box is None:
            return
        sj, si, xs, ys = box
        u, v = f.local(xs, ys)
        inside = (np.abs(u) < f.hu) & (np.abs(v) < f.hv)
        if not inside.any():
            return
        # negative heights are absolute above the host's base (rooftop units); positive are above ground
        if s.height < 0:
            top = np.full(inside.shape, self._base_height(f.cx, f.cy) - s.height, dtype=np.float32)
        else:
            top = np.full(inside.shape, self._base_height(f.cx, f.cy) + s.height, dtype=np.float32)
        raster.paint_solid(sj, si, inside, top, s.rgb, s.material)

    def _paint_forest(self, raster: Raster, forest: Forest) -> None:
        q = np.asarray(forest.polygon)
        box = raster.box(q[:, 0].min(), q[:, 0].max(), q[:, 1].min(), q[:, 1].max())
        if box is None:
            return
        sj, si, xs, ys = box
        inside = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
        edge = np.full(inside.shape, np.inf)
        for k in range(len(q)):
            a, b = q[k], q[(k + 1) % len(q)]
            length = float(np.hypot(*(b - a)))
            distance = ((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])) / length
            inside &= distance >= 0
            edge = np.minimum(edge, distance)
        if not inside.any():
            return
        # two incommensurate scales hide the square lattice of value noise
        crowns = 0.6 * _grid_noise(xs, ys, 3.7, self.seed, _SALT_CANOPY) + 0.4 * _grid_noise(
            xs + 1.3, ys + 2.1, 2.3, self.seed, _SALT_CANOPY + 2
        )
        crowns = np.clip((crowns - 0.5) * 1.6 + 0.5, 0.0, 1.0)
        stands = _grid_noise(xs, ys, 14.0, self.seed, _SALT_CANOPY + 1)
        margin = np.clip(edge / 6.0, 0.0, 1.0)  # the canopy thins out towards the forest's edge
        ground = raster.height[sj, si]
        top = ground + forest.height * (0.55 + 0.25 * stands + 0.3 * crowns) * (0.6 + 0.4 * margin)
        rgb = np.empty((*top.shape, 3), dtype=np.float32)
        rgb[:] = forest.rgb
        rgb *= (0.6 + 0.6 * crowns)[..., None]
        raster.paint_solid(sj, si, inside, top.astype(np.float32), np.clip(rgb, 0, 1), Material.TREE)

    def _paint_tree(self, raster: Raster, t: Tree) -> None:
        box = raster.box(t.x - t.radius, t.x + t.radius, t.y - t.radius, t.y + t.radius)
        if box is None:
            return
        sj, si, xs, ys = box
        r2 = ((xs - t.x) ** 2 + (ys - t.y) ** 2) / (t.radius * t.radius)
        inside = r2 < 1.0
        if not inside.any():
            return
        base = self._base_height(t.x, t.y)
        crown = 0.55 * t.height
        top = (base + (t.height - crown) + crown * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))).astype(np.float32)
        rgb = np.empty((*top.shape, 3), dtype=np.float32)
        rgb[:] = t.rgb
        rgb *= (0.8 + 0.35 * (1.0 - np.sqrt(np.minimum(r2, 1.0))))[..., None]
        raster.paint_solid(sj, si, inside, top, np.clip(rgb, 0, 1), Material.TREE)

    def _texture(self, raster: Raster, xs: np.ndarray, ys: np.ndarray) -> None:
        """Multiplicative noise per material: grass patchiness, asphalt wear, leafy canopies."""
        fine = _grid_noise(xs, ys, 1.6, self.seed, _SALT_TEXTURE)
        medium = _grid_noise(xs, ys, 7.0, self.seed, _SALT_TEXTURE + 1)
        coarse = _grid_noise(xs, ys, 35.0, self.seed, _SALT_TEXTURE + 2)
        amp_fine = np.array([0.30, 0.55, 0.12, 0.10, 0.10, 0.05, 0.08, 0.05, 0.25, 0.05], dtype=np.float32)
        amp_coarse = np.array([0.35, 0.20, 0.25, 0.15, 0.12, 0.10, 0.05, 0.0, 0.3, 0.0], dtype=np.float32)
        m = raster.material
        factor = (
            1.0
            + amp_fine[m] * (fine - 0.5)
            + 0.5 * amp_fine[m] * (medium - 0.5)
            + amp_coarse[m] * (coarse - 0.5)
        )
        raster.albedo *= factor[..., None]
        np.clip(raster.albedo, 0.0, 1.0, out=raster.albedo)


def _tint(rgb: RGB, tint: RGB) -> RGB:
    return (rgb[0] * tint[0], rgb[1] * tint[1], rgb[2] * tint[2])


def _grid_noise(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int, salt: int) -> np.ndarray:
    """Value noise on an axis-aligned grid, interpolated separably (much cheaper than per-cell hashing)."""
    gx = xs.ravel() / scale
    gy = ys.ravel() / scale
    lx0 = int(np.floor(gx.min()))
    ly0 = int(np.floor(gy.min()))
    lx = np.arange(lx0, int(np.floor(gx.max())) + 2)
    ly = np.arange(ly0, int(np.floor(gy.max())) + 2)
    lattice = hash_uniform(lx[None, :], ly[:, None], seed, salt).astype(np.float32)
    ix = np.floor(gx).astype(np.int64) - lx0
    iy = np.floor(gy).astype(np.int64) - ly0
    fx = gx - np.floor(gx)
    fy = gy - np.floor(gy)
    sx = (fx * fx * (3 - 2 * fx)).astype(np.float32)
    sy = (fy * fy * (3 - 2 * fy)).astype(np.float32)
    along_x = lattice[:, ix] * (1 - sx) + lattice[:, ix + 1] * sx
    return along_x[iy, :] * (1 - sy)[:, None] + along_x[iy + 1, :] * sy[:, None]


def _grid_fbm(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int, salt: int, octaves: int) -> np.ndarray:
    """`noise.fbm` on a grid (same values), through the separable interpolation of `_grid_noise`."""
    return fractal_sum(lambda s, o_salt: _grid_noise(xs, ys, s, seed, o_salt), scale, salt, octaves)
