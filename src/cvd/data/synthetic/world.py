"""The procedural world: terrain, zoning, a jittered street grid and the content of each block.

Everything is a pure function of (seed, world position): the street lattice's intersections
are hashed from their indices, each block's content from its own random stream. A window
of the world can therefore be rasterised anywhere, in any order, and overlapping windows
agree; the whole world never has to be held in memory.

`World` composes the parts: the colours and district styles (`palette`), what a block holds
(`town_elements`), how each land use fills a block (`block_fillers`) and how the content is
drawn into a raster (`painting`).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from cvd.data.synthetic.block_fillers import FILLERS, choose_land_use
from cvd.data.synthetic.noise import fbm_scalar, grid_fbm, hash_uniform_scalar, object_rng
from cvd.data.synthetic.options import SynthOptions
from cvd.data.synthetic.painting import (
    paint_block_ground,
    paint_building,
    paint_forest,
    paint_patch,
    paint_road,
    paint_solid,
    paint_tree,
    texture,
)
from cvd.data.synthetic.palette import FLAT_FAMILIES, GRASS, ROOF_FAMILIES, WALL_FAMILIES, Style, jitter, tint
from cvd.data.synthetic.raster import Material, Raster
from cvd.data.synthetic.town_elements import Block, Placer

# Salts keep the noise fields of different purposes independent (the painters' are in painting.py).
_SALT_TERRAIN, _SALT_ZONING, _SALT_JITTER_X, _SALT_JITTER_Y, _SALT_ROAD = 1, 2, 3, 4, 5
_SALT_STYLE = 7

CHUNK_CELLS = 256
"""Side of a cached raster chunk, in cells (128 m at the default 0.5 m cell)."""


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
        return relief * (grid_fbm(x, y, 450.0, self.seed, _SALT_TERRAIN, 2) - 0.5)

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
        placer = Placer(local, centre, axis)
        rng = object_rng(self.seed, 101, i, j)
        urban = self.urbanity(*quad.mean(axis=0))
        style = self.style(*quad.mean(axis=0))
        use = choose_land_use(rng, urban)
        block = Block(
            index=(i, j),
            quad=quad,
            land_use=use,
            ground_rgb=jitter(rng, tint(GRASS, style.vegetation), 0.1),
            ground_material=Material.GRASS,
            style=style,
        )
        FILLERS[use](block, placer, rng, urban, self.options)
        return block

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
        ground = self.ground_height
        for block in blocks:
            paint_block_ground(raster, block)
        self._paint_roads(raster, bi0, bi1, bj0, bj1)
        for block in blocks:
            for patch in block.patches:
                paint_patch(raster, patch, ground, self.options.terrain_relief)
        for block in blocks:
            for building in block.buildings:
                paint_building(raster, building, ground)
            for solid in block.solids:
                paint_solid(raster, solid, ground)
            for forest in block.forests:
                paint_forest(raster, forest, self.seed)
            for tree in block.trees:
                paint_tree(raster, tree, ground)
        texture(raster, xs, ys, self.seed)
        return raster

    def ground_height(self, x: float, y: float) -> float:
        """Terrain height (m) at one point: the ground a camera's altitude and a building stand on."""
        relief = self.options.terrain_relief
        return relief * (fbm_scalar(x, y, 450.0, self.seed, _SALT_TERRAIN, octaves=2) - 0.5)

    def _paint_roads(self, raster: Raster, bi0: int, bi1: int, bj0: int, bj1: int) -> None:
        """Every street of the lattice between block indices bi0..bi1, bj0..bj1."""
        for j in range(bj0, bj1 + 1):
            for i in range(bi0, bi1 + 1):
                for horizontal in (True, False):
                    width = self.road_width(i, j, horizontal)
                    if width <= 0:
                        continue
                    a = self.intersection(i, j)
                    b = self.intersection(i + 1, j) if horizontal else self.intersection(i, j + 1)
                    paint_road(raster, a, b, width)
