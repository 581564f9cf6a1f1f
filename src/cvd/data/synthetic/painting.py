"""Painting a block's content into a raster window: ground, roads, patches, buildings, boxes, trees.

Each painter draws one record into the cells of `raster` it covers, so a window is painted the
same whichever chunk it is part of. Heights are measured from `ground`, the terrain at one point
(the world's `ground_height`): a building stands on the ground under its centre, not on each cell.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cvd.data.synthetic.noise import grid_noise
from cvd.data.synthetic.palette import ASPHALT, MARKING, SIDEWALK
from cvd.data.synthetic.raster import Material, Raster
from cvd.data.synthetic.town_elements import Block, Building, Forest, Frame, Patch, Solid, Tree

Ground = Callable[[float, float], float]
"""Terrain height (m) at one world point."""

# Noise salts of the painters, apart from world.py's `_SALT_*`: fields sharing a salt would correlate.
_SALT_TEXTURE = 6
_SALT_CANOPY = 20


def paint_block_ground(raster: Raster, block: Block) -> None:
    """The block's ground cover over its whole quad; streets are painted over its edges after."""
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


def paint_road(raster: Raster, a: np.ndarray, b: np.ndarray, width: float) -> None:
    """One street from node a to b: sidewalk, asphalt and dashed lane markings."""
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


def paint_patch(raster: Raster, patch: Patch, ground: Ground, relief: float) -> None:
    """A ground cover by kind; water is lowered below its banks (`relief` scales how far)."""
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
            level = ground(f.cx, f.cy) - 0.25 * relief * min(1.0, f.hu / 40) - 0.4
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


def _rectangle_cells(
    raster: Raster, f: Frame
) -> tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray] | None:
    """The raster cells of a frame's rectangle: slices, the cells' frame coordinates (u, v) and
    which lie inside; None when it covers no cell."""
    box = raster.box(*f.bounds())
    if box is None:
        return None
    sj, si, xs, ys = box
    u, v = f.local(xs, ys)
    inside = (np.abs(u) < f.hu) & (np.abs(v) < f.hv)
    return (sj, si, u, v, inside) if inside.any() else None


def paint_building(raster: Raster, b: Building, ground: Ground) -> None:
    """A roof by its height profile, and the facade the renderer draws the walls from."""
    f = b.frame
    cells = _rectangle_cells(raster, f)
    if cells is None:
        return
    sj, si, u, v, inside = cells
    base = ground(f.cx, f.cy)
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


def paint_solid(raster: Raster, s: Solid, ground: Ground) -> None:
    """A flat-topped box on the ground, or on a roof when its height is negative."""
    f = s.frame
    cells = _rectangle_cells(raster, f)
    if cells is None:
        return
    sj, si, _, _, inside = cells
    # negative heights are absolute above the host's base (rooftop units); positive are above ground
    if s.height < 0:
        top = np.full(inside.shape, ground(f.cx, f.cy) - s.height, dtype=np.float32)
    else:
        top = np.full(inside.shape, ground(f.cx, f.cy) + s.height, dtype=np.float32)
    raster.paint_solid(sj, si, inside, top, s.rgb, s.material)


def paint_forest(raster: Raster, forest: Forest, seed: int) -> None:
    """A closed canopy whose crowns come from noise, lower towards the forest's edge."""
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
    crowns = 0.6 * grid_noise(xs, ys, 3.7, seed, _SALT_CANOPY) + 0.4 * grid_noise(
        xs + 1.3, ys + 2.1, 2.3, seed, _SALT_CANOPY + 2
    )
    crowns = np.clip((crowns - 0.5) * 1.6 + 0.5, 0.0, 1.0)
    stands = grid_noise(xs, ys, 14.0, seed, _SALT_CANOPY + 1)
    margin = np.clip(edge / 6.0, 0.0, 1.0)  # the canopy thins out towards the forest's edge
    ground = raster.height[sj, si]
    top = ground + forest.height * (0.55 + 0.25 * stands + 0.3 * crowns) * (0.6 + 0.4 * margin)
    rgb = np.empty((*top.shape, 3), dtype=np.float32)
    rgb[:] = forest.rgb
    rgb *= (0.6 + 0.6 * crowns)[..., None]
    raster.paint_solid(sj, si, inside, top.astype(np.float32), np.clip(rgb, 0, 1), Material.TREE)


def paint_tree(raster: Raster, t: Tree, ground: Ground) -> None:
    """A dome of canopy, lighter at the top as sunlit crowns are."""
    box = raster.box(t.x - t.radius, t.x + t.radius, t.y - t.radius, t.y + t.radius)
    if box is None:
        return
    sj, si, xs, ys = box
    r2 = ((xs - t.x) ** 2 + (ys - t.y) ** 2) / (t.radius * t.radius)
    inside = r2 < 1.0
    if not inside.any():
        return
    base = ground(t.x, t.y)
    crown = 0.55 * t.height
    top = (base + (t.height - crown) + crown * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))).astype(np.float32)
    rgb = np.empty((*top.shape, 3), dtype=np.float32)
    rgb[:] = t.rgb
    rgb *= (0.8 + 0.35 * (1.0 - np.sqrt(np.minimum(r2, 1.0))))[..., None]
    raster.paint_solid(sj, si, inside, top, np.clip(rgb, 0, 1), Material.TREE)


def texture(raster: Raster, xs: np.ndarray, ys: np.ndarray, seed: int) -> None:
    """Multiplicative noise per material: grass patchiness, asphalt wear, leafy canopies."""
    fine = grid_noise(xs, ys, 1.6, seed, _SALT_TEXTURE)
    medium = grid_noise(xs, ys, 7.0, seed, _SALT_TEXTURE + 1)
    coarse = grid_noise(xs, ys, 35.0, seed, _SALT_TEXTURE + 2)
    amp_fine = np.array([0.30, 0.55, 0.12, 0.10, 0.10, 0.05, 0.08, 0.05, 0.25, 0.05], dtype=np.float32)
    amp_coarse = np.array([0.35, 0.20, 0.25, 0.15, 0.12, 0.10, 0.05, 0.0, 0.3, 0.0], dtype=np.float32)
    m = raster.material
    factor = (
        1.0 + amp_fine[m] * (fine - 0.5) + 0.5 * amp_fine[m] * (medium - 0.5) + amp_coarse[m] * (coarse - 0.5)
    )
    raster.albedo *= factor[..., None]
    np.clip(raster.albedo, 0.0, 1.0, out=raster.albedo)
