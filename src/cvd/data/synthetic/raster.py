"""The 2.5D scene a renderer sees: a height field with per-cell surface attributes.

A height field (one surface height per ground cell) is what makes occlusion trivially
correct: a ray hits the first cell whose column it enters below the top, so facades,
leaning roofs and hidden streets all follow from the geometry, never from drawing order.
Walls are the vertical steps between cells; their look (facade colour, window rows) comes
from the building each step belongs to, stored in `FacadeTable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Material(IntEnum):
    """Surface class of a cell: drives texture, seasonal tint and the look of vertical sides."""

    GRASS = 0
    TREE = 1
    FIELD = 2
    ROAD = 3
    PAVED = 4
    WATER = 5
    ROOF = 6
    BOX = 7
    SOIL = 8
    MARKING = 9


VEGETATION = (Material.GRASS, Material.TREE, Material.FIELD)


@dataclass
class FacadeTable:
    """Per-building attributes needed to shade a wall hit (building-local frame + facade style)."""

    cx: list[float] = field(default_factory=list)
    cy: list[float] = field(default_factory=list)
    cos: list[float] = field(default_factory=list)
    sin: list[float] = field(default_factory=list)
    half_u: list[float] = field(default_factory=list)
    half_v: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    eave: list[float] = field(default_factory=list)
    floor_height: list[float] = field(default_factory=list)
    window_spacing: list[float] = field(default_factory=list)
    window_width: list[float] = field(default_factory=list)
    wall_rgb: list[tuple[float, float, float]] = field(default_factory=list)
    window_rgb: list[tuple[float, float, float]] = field(default_factory=list)

    def add(self, **values: float | tuple[float, float, float]) -> int:
        """Append one building and return its id (the value painted into `Raster.building`)."""
        for name, value in values.items():
            getattr(self, name).append(value)
        return len(self.cx) - 1

    def __len__(self) -> int:
        return len(self.cx)

    def arrays(self) -> dict[str, np.ndarray]:
        """Column arrays (float32), with one dummy row so that id -1 indexes safely."""
        out: dict[str, np.ndarray] = {}
        for name in self.__dataclass_fields__:
            values = getattr(self, name)
            if name.endswith("_rgb"):
                arr = np.asarray([*values, (0.5, 0.5, 0.5)], dtype=np.float32).reshape(-1, 3)
            else:
                arr = np.asarray([*values, 1.0], dtype=np.float32)
            out[name] = arr
        return out


@dataclass
class Raster:
    """A window of the world: cell (j, i) is centred at (x0 + (i + .5) c, y0 + (j + .5) c); j grows north."""

    x0: float
    y0: float
    cell: float
    height: np.ndarray  # (ny, nx) float32, metres above the world datum
    albedo: np.ndarray  # (ny, nx, 3) float32 in [0, 1], colour of the top surface
    material: np.ndarray  # (ny, nx) uint8 Material
    building: np.ndarray  # (ny, nx) int32 id into facades, -1 where no building
    facades: FacadeTable = field(default_factory=FacadeTable)

    @classmethod
    def flat(
        cls, x0: float, y0: float, nx: int, ny: int, cell: float, rgb: tuple[float, float, float]
    ) -> Raster:
        """An empty flat grass plane: the starting point of a window, and of hand-made test scenes."""
        albedo = np.empty((ny, nx, 3), dtype=np.float32)
        albedo[:] = rgb
        return cls(
            x0=float(x0),
            y0=float(y0),
            cell=float(cell),
            height=np.zeros((ny, nx), dtype=np.float32),
            albedo=albedo,
            material=np.full((ny, nx), Material.GRASS, dtype=np.uint8),
            building=np.full((ny, nx), -1, dtype=np.int32),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.height.shape  # type: ignore[return-value]

    def box(
        self, xa: float, xb: float, ya: float, yb: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Cells whose centres fall in [xa, xb] x [ya, yb]: slices and centre coordinates (broadcastable)."""
        ny, nx = self.shape
        i0 = max(0, int(np.ceil((xa - self.x0) / self.cell - 0.5)))
        i1 = min(nx, int(np.floor((xb - self.x0) / self.cell - 0.5)) + 1)
        j0 = max(0, int(np.ceil((ya - self.y0) / self.cell - 0.5)))
        j1 = min(ny, int(np.floor((yb - self.y0) / self.cell - 0.5)) + 1)
        if i0 >= i1 or j0 >= j1:
            return None
        xs = self.x0 + (np.arange(i0, i1, dtype=np.float64) + 0.5) * self.cell
        ys = self.y0 + (np.arange(j0, j1, dtype=np.float64) + 0.5) * self.cell
        return slice(j0, j1), slice(i0, i1), xs[None, :], ys[:, None]

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """World x (1, nx) and y (ny, 1) of all cell centres."""
        ny, nx = self.shape
        xs = self.x0 + (np.arange(nx, dtype=np.float64) + 0.5) * self.cell
        ys = self.y0 + (np.arange(ny, dtype=np.float64) + 0.5) * self.cell
        return xs[None, :], ys[:, None]

    def paint_ground(
        self,
        sj: slice,
        si: slice,
        mask: np.ndarray,
        rgb: np.ndarray | tuple[float, float, float],
        material: int,
    ) -> None:
        """Recolour ground cells (never the tops of buildings, trees or boxes already standing there)."""
        free = mask & (self.building[sj, si] < 0) & (self.material[sj, si] != Material.TREE)
        free &= self.material[sj, si] != Material.BOX
        albedo = self.albedo[sj, si]
        if isinstance(rgb, np.ndarray) and rgb.ndim == 3:
            albedo[free] = rgb[free]
        else:
            albedo[free] = rgb
        self.material[sj, si][free] = material

    def paint_solid(
        self,
        sj: slice,
        si: slice,
        mask: np.ndarray,
        top: np.ndarray,
        rgb: np.ndarray | tuple[float, float, float],
        material: int,
        building: int = -1,
    ) -> None:
        """Raise cells to `top` where the object is higher than what stands there (union of solids)."""
        height = self.height[sj, si]
        wins = mask & (top > height)
        height[wins] = top[wins]
        albedo = self.albedo[sj, si]
        if isinstance(rgb, np.ndarray) and rgb.ndim == 3:
            albedo[wins] = rgb[wins]
        else:
            albedo[wins] = rgb
        self.material[sj, si][wins] = material
        self.building[sj, si][wins] = building
