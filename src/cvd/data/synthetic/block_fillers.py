"""The content of a street block by land use: one filler per use, drawing from the block's own stream.

Each filler gets everything it reads as an argument (the block with its district style, the
placer of its inset quad, its random stream, the urbanity at its centre and the world's options),
so a block's content is a function of those alone; the order of the random draws is the world's
identity for a seed and must not change.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cvd.data.synthetic.options import SynthOptions
from cvd.data.synthetic.palette import (
    ASPHALT,
    CARS,
    CONCRETE,
    CROPS,
    FLAT_ROOFS,
    GLASS,
    PITCHED_ROOFS,
    POOL,
    RGB,
    SIDEWALK,
    SOIL,
    TRACK,
    VIVID_ROOFS,
    WALLS,
    WATER,
    Style,
    jitter,
    pick,
    tint,
)
from cvd.data.synthetic.raster import Material
from cvd.data.synthetic.town_elements import Block, Building, Forest, Frame, Patch, Placer, Solid, Tree

LAND_USES = ("residential", "campus", "commercial", "industrial", "park", "field", "forest", "water")


def choose_land_use(rng: np.random.Generator, urban: float) -> str:
    """A land use drawn by urbanity: centres are built up, the countryside is fields and forest."""
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


def _house(style: Style, rng: np.random.Generator, frame: Frame, palette: RGB) -> Building:
    """A one- or two-storey house, mostly pitched: its roof colour from the street's `palette`."""
    roof = str(rng.choice(["gable", "hip", "flat"], p=[0.55, 0.35, 0.10]))
    floors = int(rng.integers(1, 3))
    eave = floors * 2.9 + rng.uniform(0.2, 0.8)
    ridge = 0.0 if roof == "flat" else min(frame.hu, frame.hv) * rng.uniform(0.45, 0.8)
    if frame.hv > frame.hu:  # ridge along the long side
        frame = Frame(frame.cx, frame.cy, -frame.sin, frame.cos, frame.hv, frame.hu)
    roof_rgb = jitter(rng, palette if roof != "flat" else pick(rng, style.flat_roofs, FLAT_ROOFS), 0.08)
    return Building(
        frame=frame,
        eave=eave,
        roof=roof,
        ridge=ridge,
        roof_rgb=roof_rgb,
        wall_rgb=jitter(rng, pick(rng, style.walls, WALLS), 0.05),
        window_rgb=GLASS[int(rng.integers(len(GLASS)))],
        floor_height=2.9,
        window_spacing=float(rng.uniform(2.8, 4.0)),
        window_width=float(rng.uniform(0.35, 0.55)),
        parapet=roof == "flat",
    )


def _big_building(
    style: Style, rng: np.random.Generator, frame: Frame, eave: float, vivid_roofs: float
) -> Building:
    """A large building (campus, shop, shed), mostly flat-roofed; a share `vivid_roofs` is brightly roofed."""
    roof = str(rng.choice(["flat", "hip", "gable"], p=[0.78, 0.14, 0.08]))
    ridge = 0.0 if roof == "flat" else min(frame.hu, frame.hv) * rng.uniform(0.25, 0.45)
    if frame.hv > frame.hu and roof != "flat":
        frame = Frame(frame.cx, frame.cy, -frame.sin, frame.cos, frame.hv, frame.hu)
    palette = style.flat_roofs if roof == "flat" else style.roofs
    roof_rgb = pick(rng, palette, FLAT_ROOFS if roof == "flat" else PITCHED_ROOFS)
    if rng.random() < vivid_roofs:  # painted metal and membrane roofs: landmarks
        roof_rgb = VIVID_ROOFS[int(rng.integers(len(VIVID_ROOFS)))]
    ribbon = rng.random() < 0.35
    return Building(
        frame=frame,
        eave=eave,
        roof=roof,
        ridge=ridge,
        roof_rgb=jitter(rng, roof_rgb, 0.08),
        wall_rgb=jitter(rng, pick(rng, style.walls, WALLS), 0.05),
        window_rgb=GLASS[int(rng.integers(len(GLASS)))],
        floor_height=float(rng.uniform(3.3, 4.2)),
        window_spacing=float(rng.uniform(2.4, 3.6)),
        window_width=0.92 if ribbon else float(rng.uniform(0.4, 0.65)),
        parapet=roof == "flat",
    )


def _rooftop_units(block: Block, rng: np.random.Generator, b: Building) -> None:
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
            Solid(frame, -(b.eave + rng.uniform(1.0, 2.5)), jitter(rng, (0.62, 0.62, 0.6), 0.1))
        )


def _scatter_trees(
    block: Block, placer: Placer, rng: np.random.Generator, count: int, pad: float = 2.5
) -> None:
    """Up to `count` trees at free points of the block (a point that does not fit is skipped)."""
    for _ in range(count):
        point = placer.free_point(rng, pad)
        if point is None:
            continue
        x, y = placer.world(*point)
        block.trees.append(_tree(block.style, rng, x, y))


def _tree(style: Style, rng: np.random.Generator, x: float, y: float, scale: float = 1.0) -> Tree:
    """A tree in the district's vegetation tint, `scale` times the usual size."""
    green = jitter(rng, tint((0.16, 0.29, 0.10), style.vegetation), 0.18)
    return Tree(x, y, float(rng.uniform(2.2, 5.0) * scale), float(rng.uniform(7.0, 16.0) * scale), green)


def _parking_lot(block: Block, placer: Placer, rng: np.random.Generator, hu: float, hv: float) -> None:
    """A marked parking lot with rows of cars, where a free spot of that size is found in 10 tries."""
    spot = _free_spot(placer, rng, hu, hv, 2.0, tries=10)
    if spot is None:
        return
    cu, cv = spot
    frame = placer.take(cu, cv, hu, hv)
    block.patches.append(Patch(frame, jitter(rng, ASPHALT, 0.05), Material.ROAD, "parking", 2.6))
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
                        Solid(car, 1.45, jitter(rng, CARS[int(rng.integers(len(CARS)))], 0.05))
                    )
                u += 2.6


def _free_spot(
    placer: Placer, rng: np.random.Generator, hu: float, hv: float, pad: float, tries: int = 8
) -> tuple[float, float] | None:
    """A centre where a hu x hv footprint fits with `pad` to spare (random tries; 0 along an axis
    the block is too narrow to vary on), or None."""
    for _ in range(tries):
        cu = rng.uniform(placer.umin + hu, placer.umax - hu) if placer.umax - placer.umin > 2 * hu else 0.0
        cv = rng.uniform(placer.vmin + hv, placer.vmax - hv) if placer.vmax - placer.vmin > 2 * hv else 0.0
        if placer.fits(cu, cv, hu, hv, pad):
            return cu, cv
    return None


def fill_residential(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """Rows of houses facing two opposite streets, with lawns, drives, pools, sheds and garden trees."""
    palette = pick(rng, block.style.roofs, PITCHED_ROOFS)
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
                local_palette = palette if rng.random() < 0.6 else pick(rng, block.style.roofs, PITCHED_ROOFS)
                frame = placer.take(cu, cv, hu, hv)
                block.buildings.append(_house(block.style, rng, frame, local_palette))
                lawn = placer.frame(
                    u + lot / 2,
                    placer.vmin + depth / 2 if side < 0 else placer.vmax - depth / 2,
                    lot / 2 - 0.3,
                    depth / 2,
                )
                block.patches.insert(0, Patch(lawn, jitter(rng, block.ground_rgb, 0.08), Material.GRASS))
                drive_v = (placer.vmin + setback / 2) if side < 0 else (placer.vmax - setback / 2)
                drive = placer.frame(cu + hu - 1.8, drive_v, 1.5, setback / 2 + 0.2)
                block.patches.append(Patch(drive, jitter(rng, CONCRETE, 0.05), Material.PAVED))
                if rng.random() < 0.15:
                    pv = cv - side * (hv + 6.5)
                    if placer.fits(cu, pv, 3.5, 2.0, 0.5):
                        block.patches.append(Patch(placer.take(cu, pv, 3.5, 2.0), POOL, Material.WATER))
                for _ in range(int(rng.integers(0, 4))):
                    tu = u + rng.uniform(2, lot - 2)
                    tv = cv - side * (hv + rng.uniform(3, depth - 2 * hv - 2 + 3))
                    if placer.fits(tu, tv, 0, 0, 2.5):
                        block.trees.append(_tree(block.style, rng, *placer.world(tu, tv), scale=0.9))
                if rng.random() < 0.25:
                    su = u + rng.uniform(3, lot - 3)
                    sv = cv - side * (hv + rng.uniform(6, 12))
                    if placer.fits(su, sv, 1.5, 1.2, 0.5):
                        block.solids.append(
                            Solid(placer.take(su, sv, 1.5, 1.2), 2.3, jitter(rng, (0.5, 0.45, 0.4), 0.15))
                        )
            u += lot
    _scatter_trees(block, placer, rng, int(rng.integers(3, 12)))


def fill_campus(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """Up to five large buildings (some with a wing), maybe a running track, parking, paths, trees."""
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
        spot = _free_spot(placer, rng, hu, hv, 7.0)
        if spot is not None:
            cu, cv = spot
            frame = placer.take(cu, cv, hu, hv)
            b = _big_building(
                block.style, rng, frame, float(rng.uniform(9, 26 + 12 * urban)), options.vivid_roofs
            )
            block.buildings.append(b)
            _rooftop_units(block, rng, b)
            if rng.random() < 0.4:  # an L-shaped wing
                wu = cu + hu + rng.uniform(-hu * 0.5, 0) if rng.random() < 0.5 else cu - hu
                wv = cv + hv + rng.uniform(6, 10)
                whu, whv = rng.uniform(6, 10), rng.uniform(6, 10)
                if placer.fits(wu, wv, whu, whv, 1.0):
                    wing = placer.take(wu, wv, whu, whv)
                    block.buildings.append(
                        _big_building(
                            block.style, rng, wing, b.eave * rng.uniform(0.55, 1.0), options.vivid_roofs
                        )
                    )
    if rng.random() < 0.7:
        _parking_lot(block, placer, rng, rng.uniform(14, 26), rng.uniform(11, 17))
    for _ in range(int(rng.integers(1, 4))):
        point = placer.free_point(rng, 3.0)
        if point is not None:
            length = rng.uniform(15, 45)
            path = placer.frame(point[0], point[1], length, 1.4, rotate=bool(rng.random() < 0.5))
            block.patches.append(Patch(path, jitter(rng, SIDEWALK, 0.05), Material.PAVED))
    _scatter_trees(block, placer, rng, int(rng.integers(10, 35)))


def fill_commercial(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """Paved ground with mid-rise buildings (taller where the town is denser), parking and a few trees."""
    block.ground_rgb = jitter(rng, CONCRETE, 0.08)
    block.ground_material = Material.PAVED
    for _ in range(int(rng.integers(3, 9))):
        hu = rng.uniform(8, 22)
        hv = rng.uniform(8, 18)
        spot = _free_spot(placer, rng, hu, hv, 4.0)
        if spot is not None:
            cu, cv = spot
            frame = placer.take(cu, cv, hu, hv)
            eave = float(rng.uniform(8, 18 + 30 * max(0.0, urban - 0.5)))
            b = _big_building(block.style, rng, frame, eave, options.vivid_roofs)
            block.buildings.append(b)
            _rooftop_units(block, rng, b)
    for _ in range(int(rng.integers(0, 3))):
        _parking_lot(block, placer, rng, rng.uniform(10, 22), rng.uniform(11, 17))
    _scatter_trees(block, placer, rng, int(rng.integers(0, 10)))


def fill_industrial(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """Sheds on concrete or soil, shipping containers, parking and a few trees."""
    block.ground_rgb = jitter(rng, SOIL if rng.random() < 0.3 else CONCRETE, 0.08)
    block.ground_material = Material.SOIL if block.ground_rgb[0] < 0.5 else Material.PAVED
    for _ in range(int(rng.integers(1, 4))):
        hu = rng.uniform(18, 42)
        hv = rng.uniform(12, 24)
        spot = _free_spot(placer, rng, hu, hv, 6.0)
        if spot is not None:
            cu, cv = spot
            frame = placer.take(cu, cv, hu, hv)
            b = _big_building(block.style, rng, frame, float(rng.uniform(7, 13)), options.vivid_roofs)
            block.buildings.append(b)
            _rooftop_units(block, rng, b)
    for _ in range(int(rng.integers(4, 20))):
        point = placer.free_point(rng, 2.0)
        if point is None:
            continue
        colour = jitter(
            rng,
            ((0.6, 0.2, 0.15), (0.15, 0.3, 0.55), (0.7, 0.6, 0.2), (0.4, 0.45, 0.4))[int(rng.integers(4))],
        )
        block.solids.append(Solid(placer.frame(point[0], point[1], 6.1, 1.25), 2.6, colour))
    if rng.random() < 0.5:
        _parking_lot(block, placer, rng, rng.uniform(10, 20), rng.uniform(11, 17))
    _scatter_trees(block, placer, rng, int(rng.integers(0, 8)))


def fill_park(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """Grass with paths and clusters of trees, often a pond or a sports pitch."""
    if rng.random() < 0.5:
        hu = rng.uniform(12, 28)
        hv = rng.uniform(9, 20)
        if placer.fits(0.0, 0.0, hu, hv, 3.0):
            block.patches.append(
                Patch(placer.take(0.0, 0.0, hu, hv), jitter(rng, WATER, 0.1), Material.WATER, "ellipse")
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
            path = placer.frame(point[0], point[1], rng.uniform(20, 50), 1.2, rotate=bool(rng.random() < 0.5))
            block.patches.append(Patch(path, jitter(rng, SOIL, 0.05), Material.SOIL))
    for _ in range(int(rng.integers(3, 7))):
        centre = placer.free_point(rng, 4.0)
        if centre is None:
            continue
        for _ in range(int(rng.integers(4, 14))):
            u = centre[0] + rng.normal(0, 7)
            v = centre[1] + rng.normal(0, 7)
            if placer.fits(u, v, 0, 0, 2.0):
                block.trees.append(_tree(block.style, rng, *placer.world(u, v)))


def fill_field(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """Crop stripes over the whole block (sometimes two crops), hedgerows, maybe a farmhouse."""
    crop = jitter(rng, tint(CROPS[int(rng.integers(len(CROPS)))], block.style.vegetation), 0.08)
    block.ground_rgb = crop
    block.ground_material = Material.FIELD
    hu = (placer.umax - placer.umin) / 2 + 5
    hv = (placer.vmax - placer.vmin) / 2 + 5
    frame = placer.frame(0.0, 0.0, hu, hv, rotate=bool(rng.random() < 0.5))
    block.patches.append(Patch(frame, crop, Material.FIELD, "stripes", float(rng.uniform(2.0, 5.0))))
    if rng.random() < 0.4:  # a second crop on half of the block
        half = placer.frame(hu / 2, 0.0, hu / 2, hv)
        other = jitter(rng, CROPS[int(rng.integers(len(CROPS)))], 0.08)
        block.patches.append(Patch(half, other, Material.FIELD, "stripes", float(rng.uniform(2.0, 5.0))))
    edge = placer.poly
    for k in range(4):
        if rng.random() < 0.5:
            continue
        a, b = edge[k], edge[(k + 1) % 4]
        for t in np.arange(0.05, 0.95, rng.uniform(0.05, 0.12)):
            p = a + (b - a) * t
            x, y = placer.world(float(p[0]), float(p[1]))
            block.trees.append(_tree(block.style, rng, x, y, scale=0.8))
    if rng.random() < 0.3:
        point = placer.free_point(rng, 10.0)
        if point is not None:
            frame = placer.take(point[0], point[1], rng.uniform(8, 14), rng.uniform(5, 8))
            block.buildings.append(
                _house(block.style, rng, frame, pick(rng, block.style.roofs, PITCHED_ROOFS))
            )


def fill_forest(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """A closed canopy over the block with a few taller trees standing out of it."""
    block.ground_rgb = jitter(rng, tint((0.20, 0.27, 0.13), block.style.vegetation), 0.08)
    polygon = tuple(placer.world(float(u), float(v)) for u, v in placer.poly)
    green = jitter(rng, tint((0.15, 0.27, 0.10), block.style.vegetation), 0.12)
    block.forests.append(Forest(polygon, float(rng.uniform(11.0, 17.0)), green))
    for _ in range(int(rng.integers(4, 12))):  # a few taller trees standing out of the canopy
        point = placer.free_point(rng, 0.0)
        if point is not None:
            block.trees.append(_tree(block.style, rng, *placer.world(*point), scale=1.4))


def fill_water(
    block: Block, placer: Placer, rng: np.random.Generator, urban: float, options: SynthOptions
) -> None:
    """A lake filling most of the block, trees on its banks."""
    hu = (placer.umax - placer.umin) / 2 * rng.uniform(0.7, 0.95)
    hv = (placer.vmax - placer.vmin) / 2 * rng.uniform(0.7, 0.95)
    block.patches.append(
        Patch(placer.take(0.0, 0.0, hu, hv), jitter(rng, WATER, 0.1), Material.WATER, "ellipse")
    )
    _scatter_trees(block, placer, rng, int(rng.integers(5, 20)))


Filler = Callable[[Block, Placer, np.random.Generator, float, SynthOptions], None]

FILLERS: dict[str, Filler] = {
    "residential": fill_residential,
    "campus": fill_campus,
    "commercial": fill_commercial,
    "industrial": fill_industrial,
    "park": fill_park,
    "field": fill_field,
    "forest": fill_forest,
    "water": fill_water,
}
"""Land use -> the filler that builds a block of it (one per entry of `LAND_USES`)."""
