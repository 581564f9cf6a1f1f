"""Turn ray hits into pixels: surface colour, facades, sky, haze and the camera's colour response.

One `Scene` (a rasterised window, as tensors) is rendered by any number of cameras under any
number of `Shading`s (captures); the per-view work is the ray cast plus table lookups.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from cvd.data.synthetic.cameras import OrthoCamera, PanoramaCamera, PinholeCamera
from cvd.data.synthetic.lighting import MIP_LEVELS, Capture, Geometry, Shading, shade
from cvd.data.synthetic.raster import Material, Raster
from cvd.data.synthetic.raycast import HeightField, RayHits

Camera = PinholeCamera | OrthoCamera | PanoramaCamera


@contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run with `count` torch threads, then restore: rendering works on many small tensors, where
    extra threads cost more in start-up (and in spinning, when the cores are busy) than they gain."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Scene:
    """A rasterised window prepared for rendering (torch views of its arrays)."""

    def __init__(self, raster: Raster, geometry: Geometry | None = None) -> None:
        self.raster = raster
        self.geometry = geometry or Geometry.of(raster)
        self.field = HeightField(self.geometry.height, raster.x0, raster.y0, raster.cell)
        self.albedo = self.geometry.albedo.reshape(3, -1)  # channels first
        self.material = torch.from_numpy(np.ascontiguousarray(raster.material).astype(np.int64)).reshape(-1)
        self.building = torch.from_numpy(np.ascontiguousarray(raster.building).astype(np.int64)).reshape(-1)
        self.facades = {k: torch.from_numpy(v) for k, v in raster.facades.arrays().items()}

    def crop(self, centre: tuple[float, float], half: float) -> Scene:
        """The part of this scene within `half` metres of `centre` (a satellite tile needs no more)."""
        r = self.raster
        i0 = max(0, math.floor((centre[0] - half - r.x0) / r.cell))
        j0 = max(0, math.floor((centre[1] - half - r.y0) / r.cell))
        i1 = min(r.shape[1], math.ceil((centre[0] + half - r.x0) / r.cell))
        j1 = min(r.shape[0], math.ceil((centre[1] + half - r.y0) / r.cell))
        raster = Raster(
            x0=r.x0 + i0 * r.cell,
            y0=r.y0 + j0 * r.cell,
            cell=r.cell,
            height=r.height[j0:j1, i0:i1],
            albedo=r.albedo[j0:j1, i0:i1],
            material=r.material[j0:j1, i0:i1],
            building=r.building[j0:j1, i0:i1],
            facades=r.facades,
        )
        return Scene(raster, self.geometry.crop(j0, j1, i0, i1))

    def shade(self, capture: Capture) -> Shading:
        """Light this scene as `capture` saw it."""
        with torch_threads(1):
            return shade(self.geometry, capture)


def _top_colour(
    scene: Scene, shading: Shading, points: torch.Tensor, footprint: torch.Tensor
) -> torch.Tensor:
    r = scene.raster
    level = (
        torch.floor(torch.log2((footprint / r.cell).clamp_min(1e-6)) + 0.3).clamp(0, MIP_LEVELS - 1).long()
    )
    gx = (points[:, 0] - r.x0) / r.cell
    gy = (points[:, 1] - r.y0) / r.cell
    scale = torch.pow(2.0, level.float())
    ix = torch.floor(gx / scale).long()
    iy = torch.floor(gy / scale).long()
    shapes = torch.tensor(shading.mip_shapes, dtype=torch.int64)
    offsets = torch.tensor(shading.mip_offsets, dtype=torch.int64)
    h = shapes[level, 0]
    w = shapes[level, 1]
    index = offsets[level] + iy.clamp_min(0).minimum(h - 1) * w + ix.clamp_min(0).minimum(w - 1)
    return shading.mips.index_select(1, index).T


def _wall_colour(
    scene: Scene, shading: Shading, hits_idx: torch.Tensor, hits: RayHits, footprint: torch.Tensor
) -> torch.Tensor:
    """Facades (wall colour, window rows, lit by the sun on their face) and sides of other solids."""
    cell = hits.cell[hits_idx]
    point = hits.point[hits_idx]
    building = scene.building[cell]
    has_building = building >= 0
    b = building.clamp_min(0)
    fac = scene.facades
    dx = point[:, 0] - fac["cx"][b]
    dy = point[:, 1] - fac["cy"][b]
    cos, sin = fac["cos"][b], fac["sin"][b]
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    on_u = (fac["half_u"][b] - u.abs()) < (fac["half_v"][b] - v.abs())
    nx = torch.where(on_u, torch.sign(u) * cos, -torch.sign(v) * sin)
    ny = torch.where(on_u, torch.sign(u) * sin, torch.sign(v) * cos)
    along = torch.where(on_u, v, u)
    z = point[:, 2]
    above_base = z - fac["base"][b]
    floor_h = fac["floor_height"][b]
    spacing = fac["window_spacing"][b]
    floor_frac = torch.remainder(above_base / floor_h, 1.0)
    col_frac = torch.remainder(along / spacing + 0.5, 1.0)
    width = fac["window_width"][b]
    pattern = (
        (above_base > 0.8)
        & (z < fac["eave"][b] - 0.4)
        & (floor_frac > 0.32)
        & (floor_frac < 0.8)
        & ((col_frac - 0.5).abs() < width / 2)
    ).float()
    coverage = 0.48 * width * (z < fac["eave"][b]).float()
    fade = (footprint / (0.6 * torch.minimum(floor_h, spacing)) - 1.0).clamp(0, 1)
    glass = pattern * (1 - fade) + coverage * fade
    wall_rgb = fac["wall_rgb"][b]
    window_rgb = fac["window_rgb"][b]
    facade = wall_rgb * (1 - glass[:, None]) + window_rgb * glass[:, None]

    # sides of trees, boxes and terrain steps: their own top colour, darker
    side = scene.albedo.index_select(1, cell).T * 0.85
    tree = scene.material[cell] == Material.TREE
    # a height field fills the space under a canopy: shade its lower part as shadowed foliage
    # and trunks (a dark brown base) so that from the street a tree is not a green pillar
    outer = hits.outer_cell[hits_idx]
    ground = scene.field.flat.index_select(0, outer)
    top = scene.field.flat.index_select(0, cell)
    relative = ((z - ground) / (top - ground).clamp_min(0.5)).clamp(0, 1)
    canopy = ((relative - 0.3) / 0.3).clamp(0, 1)
    foliage = side * shading.vegetation_scale * 0.8
    trunk = torch.tensor([0.16, 0.13, 0.10])
    foliage = foliage * (0.55 + 0.45 * canopy[:, None]) * canopy[:, None] + trunk * (1 - canopy[:, None])
    side = torch.where(tree[:, None], foliage, side)
    base = torch.where(has_building[:, None], facade, side)
    cell_normal = hits.wall_normal[hits_idx]
    nx = torch.where(has_building, nx, cell_normal[:, 0])
    ny = torch.where(has_building, ny, cell_normal[:, 1])
    cosine = (nx * shading.sun[0] + ny * shading.sun[1]).clamp_min(0)
    lit = (z >= shading.shadow_height[outer] - 0.1).float()
    light = shading.ambient_rgb * 0.85 + shading.sun_rgb * (cosine * lit)[:, None]
    colour = base * light
    reflection = 0.08 * glass[:, None] * shading.ambient_rgb * 2.0
    return colour + torch.where(has_building[:, None], reflection, torch.zeros_like(reflection))


def _sky(directions: torch.Tensor, shading: Shading) -> torch.Tensor:
    up = directions[:, 2].clamp(0, 1)[:, None]
    zenith = torch.tensor([0.32, 0.48, 0.78])
    horizon = torch.tensor(shading.capture.haze_rgb)
    return horizon * (1 - up.sqrt()) + zenith * up.sqrt()


def _colour_hits(
    scene: Scene, shading: Shading, hits: RayHits, footprint: torch.Tensor, colour: torch.Tensor
) -> None:
    top = torch.nonzero(hits.hit & ~hits.wall).squeeze(1)
    colour.index_copy_(0, top, _top_colour(scene, shading, hits.point[top], footprint[top]))
    wall_idx = torch.nonzero(hits.wall).squeeze(1)
    if wall_idx.numel():
        colour.index_copy_(0, wall_idx, _wall_colour(scene, shading, wall_idx, hits, footprint[wall_idx]))


MAX_BATCH_RAYS = 70_000
"""Rays cast together at most. Batching views of one capture saves per-call overhead, but
measured on the 2-core box it gained nothing at 128-256 px and larger batches were slower
(memory traffic): so about one 256 px view, or four 128 px views, per cast."""


def render(
    camera: Camera,
    layers: list[tuple[Scene, Shading]],
    rng: np.random.Generator | None = None,
    sensor_noise: float = 0.0,
    supersample: int = 1,
    t_max: float = float("inf"),
    exposure_jitter: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Render one view through nested layers (detailed near window first, coarse far field after).

    Returns an (H, W, 3) uint8 image. Rays that leave a layer without hitting continue into
    the next one from where they left; rays that leave all of them see sky or hazy ground.
    Runs on one torch thread (see `torch_threads`); parallelism comes from worker processes.
    """
    return render_views([camera], layers, [rng], sensor_noise, supersample, t_max, [exposure_jitter])[0]


def render_views(
    cameras: list[Camera],
    layers: list[tuple[Scene, Shading]],
    rngs: list[np.random.Generator | None] | None = None,
    sensor_noise: float = 0.0,
    supersample: int = 1,
    t_max: float = float("inf"),
    exposure_jitters: list[tuple[float, float, float]] | None = None,
) -> list[np.ndarray]:
    """Render several views of one capture, casting their rays together (same result as one by one)."""
    rngs = rngs or [None] * len(cameras)
    jitters = exposure_jitters or [(1.0, 1.0, 1.0)] * len(cameras)
    images: list[np.ndarray] = []
    with torch_threads(1):
        batch: list[int] = []
        rays = 0
        for index, camera in enumerate(cameras):
            size = camera.width * camera.height * supersample * supersample
            if batch and rays + size > MAX_BATCH_RAYS:
                images += _render_batch([cameras[k] for k in batch], layers, supersample, t_max)
                batch, rays = [], 0
            batch.append(index)
            rays += size
        if batch:
            images += _render_batch([cameras[k] for k in batch], layers, supersample, t_max)
        shading = layers[0][1]
        return [
            _develop(image, shading, rng, sensor_noise, jitter)
            for image, rng, jitter in zip(images, rngs, jitters)
        ]


def _render_batch(
    cameras: list[Camera], layers: list[tuple[Scene, Shading]], supersample: int, t_max: float
) -> list[torch.Tensor]:
    """Linear colours (H, W, 3) of each camera's view, before the camera response."""
    origins_list, directions_list, angles = [], [], []
    for camera in cameras:
        o, d = camera.rays(supersample)
        origins_list.append(o)
        directions_list.append(d)
        if isinstance(camera, OrthoCamera):
            angles.append(torch.zeros(o.shape[0]))  # tiles have a fixed footprint: their GSD
        else:
            angles.append(torch.full((o.shape[0],), camera.pixel_angle() / supersample))
    origins = torch.cat(origins_list)
    directions = torch.cat(directions_list)
    pixel_angle = torch.cat(angles)
    gsd = torch.cat(
        [
            torch.full((o.shape[0],), c.gsd / supersample if isinstance(c, OrthoCamera) else 0.0)
            for c, o in zip(cameras, origins_list)
        ]
    )
    count = origins.shape[0]
    colour = torch.zeros(count, 3)
    distance = torch.full((count,), float("inf"))
    remaining = torch.arange(count)
    t_start: torch.Tensor | None = None
    shading = layers[0][1]
    for scene, layer_shading in layers:
        if remaining.numel() == 0:
            break
        o = origins.index_select(0, remaining)
        d = directions.index_select(0, remaining)
        hits = scene.field.cast(o, d, t_max=t_max, t_min=t_start)
        t = torch.where(hits.hit, hits.t, torch.zeros_like(hits.t))
        perspective = t * pixel_angle.index_select(0, remaining) / d[:, 2].abs().clamp_min(0.25)
        footprint = torch.where(
            gsd.index_select(0, remaining) > 0, gsd.index_select(0, remaining), perspective
        )
        part = torch.zeros(o.shape[0], 3)
        _colour_hits(scene, layer_shading, hits, footprint, part)
        got = torch.nonzero(hits.hit).squeeze(1)
        colour.index_copy_(0, remaining.index_select(0, got), part.index_select(0, got))
        distance.index_copy_(0, remaining.index_select(0, got), hits.t.index_select(0, got))
        missed = torch.nonzero(~hits.hit).squeeze(1)
        t_start = hits.t_exit.index_select(0, missed)
        remaining = remaining.index_select(0, missed)

    if remaining.numel():
        d = directions.index_select(0, remaining)
        o = origins.index_select(0, remaining)
        down = d[:, 2] < -1e-3
        zmin = layers[-1][0].field.zmin
        ground_t = torch.where(
            down, (o[:, 2] - zmin) / (-d[:, 2]).clamp_min(1e-3), torch.full_like(d[:, 2], 1e5)
        )
        far_ground = layers[-1][1].mean_rgb.expand(remaining.shape[0], 3)
        colour.index_copy_(0, remaining, torch.where(down[:, None], far_ground, _sky(d, shading)))
        distance.index_copy_(0, remaining, torch.where(down, ground_t, torch.full_like(ground_t, 1e5)))

    cap = shading.capture
    haze_rgb = torch.tensor(cap.haze_rgb)
    if cap.haze_density > 0:  # distance haze; a satellite's atmosphere is its constant veil
        transmission = torch.exp(-cap.haze_density * distance.clamp(max=1e5))[:, None]
        transmission = torch.where(gsd[:, None] > 0, torch.ones_like(transmission), transmission)
        colour = colour * transmission + haze_rgb * (1 - transmission)
    if cap.veil > 0:
        colour = colour * (1 - cap.veil) + haze_rgb * cap.veil

    images = []
    start = 0
    for camera in cameras:
        height = camera.height * supersample
        width = camera.width * supersample
        image = colour[start : start + height * width].reshape(height, width, 3)
        start += height * width
        if supersample > 1:
            image = F.avg_pool2d(image.permute(2, 0, 1)[None], supersample)[0].permute(1, 2, 0)
        images.append(image)
    return images


def _develop(
    image: torch.Tensor,
    shading: Shading,
    rng: np.random.Generator | None,
    sensor_noise: float,
    exposure_jitter: tuple[float, float, float],
) -> np.ndarray:
    """Camera response: white balance, exposure, saturation, tone curve, contrast, sensor noise."""
    cap = shading.capture
    gains = torch.tensor(cap.white_balance) * cap.exposure * torch.tensor(exposure_jitter)
    c = image * gains
    luminance = (c * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    c = luminance + cap.saturation * (c - luminance)
    c = c.clamp(0, 1.5)
    c = c / (1 + 0.25 * c)  # soft shoulder instead of hard clipping of bright roofs
    c = torch.pow(c.clamp_min(0), 1.0 / (1.7 * cap.gamma))
    c = 0.5 + cap.contrast * (c - 0.5)
    out = c.numpy()
    if rng is not None and sensor_noise > 0:
        out = out + rng.normal(0.0, sensor_noise, size=out.shape).astype(np.float32)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
