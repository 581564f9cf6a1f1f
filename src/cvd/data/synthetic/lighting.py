"""Capture conditions (sun, sky, haze, season, camera colour response) and per-capture shading.

A capture is one acquisition of a place: the satellite pass over a tile, or the drone flight
around a location. Two captures of the same place differ in sun direction (so shadows fall
elsewhere), sky colour, haze, vegetation season and the camera's colour balance: the
viewpoint-specific appearance CVD is meant to separate from content.

Shading is done once per capture over the whole window (shadow height field by a sweep
towards the sun, lit top-surface colour, a small mip pyramid); a view then only looks
values up at its ray hits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cvd.data.synthetic.raster import VEGETATION, Raster

MIP_LEVELS = 4


@dataclass(frozen=True)
class Capture:
    sun_azimuth_deg: float  # clockwise from north, where the sun stands
    sun_elevation_deg: float
    sun_rgb: tuple[float, float, float]
    ambient_rgb: tuple[float, float, float]
    haze_rgb: tuple[float, float, float]
    haze_density: float  # extinction per metre of view distance
    veil: float  # constant haze fraction (thin atmosphere of a satellite shot)
    season: float  # -1 dry .. +1 lush vegetation
    white_balance: tuple[float, float, float]
    exposure: float
    contrast: float
    saturation: float
    gamma: float

    def sun_direction(self) -> np.ndarray:
        """Unit vector from the ground towards the sun (x east, y north, z up)."""
        az = math.radians(self.sun_azimuth_deg)
        el = math.radians(self.sun_elevation_deg)
        return np.array([math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el)])

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _colour_response(rng: np.random.Generator, jitter: float) -> dict[str, Any]:
    wb = 1.0 + jitter * rng.uniform(-0.08, 0.08, size=3)
    wb /= wb.mean()
    return {
        "white_balance": tuple(float(v) for v in wb),
        "exposure": float(1.0 + jitter * rng.uniform(-0.15, 0.15)),
        "contrast": float(1.0 + jitter * rng.uniform(-0.12, 0.15)),
        "saturation": float(1.0 + jitter * rng.uniform(-0.25, 0.15)),
        "gamma": float(1.0 + jitter * rng.uniform(-0.08, 0.08)),
    }


def satellite_capture(
    rng: np.random.Generator, veil: tuple[float, float], season_shift: float, colour_jitter: float
) -> Capture:
    """A late-morning satellite pass: high sun from the south, cool thin haze, muted colours."""
    return Capture(
        sun_azimuth_deg=float(rng.uniform(125, 235)),
        sun_elevation_deg=float(rng.uniform(42, 68)),
        sun_rgb=(1.0, 0.97, 0.92),
        ambient_rgb=(0.34, 0.37, 0.44),
        haze_rgb=(0.66, 0.70, 0.76),
        haze_density=0.0,
        veil=float(rng.uniform(*veil)),
        season=float(np.clip(0.4 + season_shift * rng.uniform(-1, 1), -1, 1)),
        **_colour_response(rng, colour_jitter * 0.7),
    )


def drone_capture(
    rng: np.random.Generator, haze: tuple[float, float], season_shift: float, colour_jitter: float
) -> Capture:
    """A drone flight at any time of day: the sun anywhere, warmer or cooler light, distance haze."""
    elevation = float(rng.uniform(22, 62))
    warmth = float(rng.uniform(-1, 1))
    sun = (1.0 + 0.08 * warmth, 0.96, 0.9 - 0.1 * warmth)
    return Capture(
        sun_azimuth_deg=float(rng.uniform(0, 360)),
        sun_elevation_deg=elevation,
        sun_rgb=sun,
        ambient_rgb=(0.33 - 0.03 * warmth, 0.36, 0.42 + 0.04 * warmth),
        haze_rgb=(0.72 + 0.05 * warmth, 0.75, 0.80 - 0.04 * warmth),
        haze_density=float(rng.uniform(*haze)),
        veil=0.0,
        season=float(np.clip(0.4 - season_shift * rng.uniform(0.3, 1.6), -1, 1)),
        **_colour_response(rng, colour_jitter),
    )


@dataclass
class Shading:
    """What views of one capture look up: lit colours (mips), shadow heights, facade lighting."""

    capture: Capture
    mips: torch.Tensor  # (3, sum of level sizes): channels first, levels concatenated
    mip_offsets: list[int]
    mip_shapes: list[tuple[int, int]]
    shadow_height: torch.Tensor  # (ny*nx,) a point at (x, y, z) is in shadow iff z < value
    sun: torch.Tensor  # (3,)
    sun_rgb: torch.Tensor
    ambient_rgb: torch.Tensor
    vegetation_scale: torch.Tensor  # (3,) seasonal factor applied to vegetation (also on tree sides)
    mean_rgb: torch.Tensor


def _season_scale(season: float) -> np.ndarray:
    dry = np.array([1.32, 1.12, 0.86])
    lush = np.array([0.88, 1.04, 0.92])
    return np.where(season >= 0, 1 + season * (lush - 1), 1 + (-season) * (dry - 1)).astype(np.float32)


def shadow_heights(height: torch.Tensor, cell: float, sun: np.ndarray) -> torch.Tensor:
    """Height below which each column is shadowed: max over d>0 of H(p + d s_xy) - d tan(elevation).

    Computed in a grid rotated so that the sun lies along one axis, where the maximum is a
    reverse running maximum (linear time); values come back by nearest lookup.
    """
    ny, nx = height.shape
    horizontal = math.hypot(sun[0], sun[1])
    if horizontal < 1e-6:
        return torch.full_like(height, float("-inf"))
    slope = sun[2] / horizontal  # rise per metre travelled towards the sun
    ax, ay = sun[0] / horizontal, sun[1] / horizontal  # towards the sun, in cell index axes
    bx, by = -ay, ax
    corners = np.array([[0, 0], [nx, 0], [0, ny], [nx, ny]], dtype=np.float64)
    a_range = corners @ np.array([ax, ay])
    b_range = corners @ np.array([bx, by])
    a0, a1 = math.floor(a_range.min()), math.ceil(a_range.max())
    b0, b1 = math.floor(b_range.min()), math.ceil(b_range.max())
    a = torch.arange(a0, a1 + 1, dtype=torch.float32)
    b = torch.arange(b0, b1 + 1, dtype=torch.float32)
    px = a[None, :] * ax + b[:, None] * bx
    py = a[None, :] * ay + b[:, None] * by
    padded = F.pad(height, (1, 1, 1, 1), value=float("-inf")).reshape(-1)
    ix = (px.clamp(-0.5, nx + 0.5) + 1.0).long()
    iy = (py.clamp(-0.5, ny + 0.5) + 1.0).long()
    rotated = padded.index_select(0, (iy * (nx + 2) + ix).reshape(-1)).reshape(px.shape)
    k = torch.arange(rotated.shape[1], dtype=torch.float32) * float(cell * slope)
    g = rotated - k[None, :]
    running = torch.flip(torch.cummax(torch.flip(g, dims=[1]), dim=1).values, dims=[1])
    s_rot = torch.cat([running[:, 1:], torch.full((running.shape[0], 1), float("-inf"))], dim=1) + k[None, :]
    # back to the raster: nearest rotated sample of each cell centre
    xs = torch.arange(nx, dtype=torch.float32) + 0.5
    ys = torch.arange(ny, dtype=torch.float32) + 0.5
    ca = torch.round(xs[None, :] * ax + ys[:, None] * ay - a0).long().clamp(0, s_rot.shape[1] - 1)
    cb = torch.round(xs[None, :] * bx + ys[:, None] * by - b0).long().clamp(0, s_rot.shape[0] - 1)
    return s_rot.reshape(-1).index_select(0, (cb * s_rot.shape[1] + ca).reshape(-1)).reshape(ny, nx)


@dataclass
class Geometry:
    """Capture-independent surface terms of a window, computed once and shared by all captures.

    Per-cell planes are stored channels first (3, ny, nx) so that shading and mip-mapping run
    on contiguous planes without transposes.
    """

    height: torch.Tensor  # (ny, nx)
    cell: float
    normal: torch.Tensor  # (3, ny, nx)
    occlusion: torch.Tensor  # (ny, nx) ambient occlusion factor
    albedo: torch.Tensor  # (3, ny, nx)
    vegetation: torch.Tensor  # (ny, nx) float 0/1

    @classmethod
    def of(cls, raster: Raster) -> Geometry:
        height = raster.height
        gy, gx = np.gradient(height, raster.cell)
        steep = (np.abs(gx) > 2.0) | (np.abs(gy) > 2.0)  # vertical steps are walls, their tops are flat
        gx[steep] = 0.0
        gy[steep] = 0.0
        norm = np.sqrt(gx * gx + gy * gy + 1.0)
        normal = np.stack([-gx / norm, -gy / norm, 1.0 / norm]).astype(np.float32)
        # ambient occlusion: ground next to tall things sees less sky
        around = ndimage.uniform_filter(height, size=max(3, round(6.0 / raster.cell)), mode="nearest")
        occlusion = (1.0 - 0.5 * np.clip((around - height) / 8.0, 0.0, 1.0)).astype(np.float32)
        vegetation = np.isin(raster.material, [int(m) for m in VEGETATION]).astype(np.float32)
        return cls(
            height=torch.from_numpy(np.ascontiguousarray(height)),
            cell=raster.cell,
            normal=torch.from_numpy(normal),
            occlusion=torch.from_numpy(occlusion),
            albedo=torch.from_numpy(np.ascontiguousarray(np.moveaxis(raster.albedo, -1, 0))),
            vegetation=torch.from_numpy(vegetation),
        )

    def crop(self, j0: int, j1: int, i0: int, i1: int) -> Geometry:
        return Geometry(
            height=self.height[j0:j1, i0:i1].contiguous(),
            cell=self.cell,
            normal=self.normal[:, j0:j1, i0:i1].contiguous(),
            occlusion=self.occlusion[j0:j1, i0:i1].contiguous(),
            albedo=self.albedo[:, j0:j1, i0:i1].contiguous(),
            vegetation=self.vegetation[j0:j1, i0:i1].contiguous(),
        )


def shade(geometry: Geometry, capture: Capture) -> Shading:
    """Lit colour of every top surface under this capture, and its shadow height field."""
    sun = capture.sun_direction()
    height = geometry.height
    shadow = shadow_heights(height, geometry.cell, sun)
    bias = geometry.cell * math.tan(math.radians(capture.sun_elevation_deg)) * 1.5 + 0.05
    direct = (height >= shadow - bias).float()
    n = geometry.normal
    direct *= (n[0] * float(sun[0]) + n[1] * float(sun[1]) + n[2] * float(sun[2])).clamp_min_(0.0)
    veg_scale = torch.from_numpy(_season_scale(capture.season))
    planes = []
    for c in range(3):  # colour = albedo x season x (ambient x occlusion + sun x cos x lit)
        light = geometry.occlusion * capture.ambient_rgb[c] + direct * capture.sun_rgb[c]
        season = 1.0 + geometry.vegetation * (float(veg_scale[c]) - 1.0)
        planes.append(geometry.albedo[c] * season * light)
    level = torch.stack(planes)[None].clamp_(0.0, 4.0)
    mips, offsets, shapes = [], [], []
    total = 0
    for _ in range(MIP_LEVELS):
        _, _, h, w = level.shape
        mips.append(level[0].reshape(3, -1))
        offsets.append(total)
        shapes.append((h, w))
        total += h * w
        level = F.avg_pool2d(level, 2, ceil_mode=True)
    return Shading(
        capture=capture,
        mips=torch.cat(mips, dim=1),
        mip_offsets=offsets,
        mip_shapes=shapes,
        shadow_height=shadow.reshape(-1).contiguous(),
        sun=torch.from_numpy(sun.astype(np.float32)),
        sun_rgb=torch.tensor(capture.sun_rgb, dtype=torch.float32),
        ambient_rgb=torch.tensor(capture.ambient_rgb, dtype=torch.float32),
        vegetation_scale=veg_scale,
        mean_rgb=mips[0].mean(dim=1),
    )
