"""Camera models of the three captures, each producing one ray per pixel.

Conventions (also in docs/synthetic.md and every image's metadata): world x east, y north,
z up, metres. Image pixel (row r, column c) covers [c, c+1) x [r, r+1); its centre is
(c + 0.5, r + 0.5). The perspective camera frame is OpenCV's: x right, y down, z forward,
so a world point P projects to u = fx * X/Z + cx, v = fy * Y/Z + cy with (X, Y, Z) = R (P - C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World->camera rotation (rows: camera x, y, z axes in world), looking from position at target."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


@dataclass(frozen=True)
class PinholeCamera:
    """Perspective drone (or street) camera."""

    position: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]  # world -> camera, 3x3
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def looking_at(
        cls, position: np.ndarray, target: np.ndarray, width: int, height: int, vfov_deg: float
    ) -> PinholeCamera:
        """A square-pixel camera with the vertical field of view `vfov_deg`, centred principal point."""
        focal = (height / 2.0) / math.tan(math.radians(vfov_deg) / 2.0)
        rotation = look_at(position, target)
        return cls(
            position=tuple(float(v) for v in position),  # type: ignore[arg-type]
            rotation=tuple(tuple(float(v) for v in row) for row in rotation),
            width=width,
            height=height,
            fx=focal,
            fy=focal,
            cx=width / 2.0,
            cy=height / 2.0,
        )

    def rays(self, supersample: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and unit directions (H*W*s*s, 3), row-major over the (supersampled) pixel grid."""
        s = supersample
        cols = (torch.arange(self.width * s, dtype=torch.float64) + 0.5) / s
        rows = (torch.arange(self.height * s, dtype=torch.float64) + 0.5) / s
        v, u = torch.meshgrid(rows, cols, indexing="ij")
        x = (u - self.cx) / self.fx
        y = (v - self.cy) / self.fy
        camera = torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 3)
        world = camera @ torch.tensor(self.rotation, dtype=torch.float64)  # R^T applied to row vectors
        world = world / world.norm(dim=1, keepdim=True)
        origins = torch.tensor(self.position, dtype=torch.float64).expand_as(world)
        return origins.float().contiguous(), world.float().contiguous()

    def pixel_angle(self) -> float:
        """Angular size of one pixel (radians): sets how far a pixel's footprint grows with distance."""
        return 1.0 / self.fx

    def metadata(self) -> dict[str, Any]:
        r = np.asarray(self.rotation)
        forward = r[2]
        yaw = math.degrees(math.atan2(forward[0], forward[1])) % 360.0
        pitch = math.degrees(math.asin(-forward[2]))
        return {
            "model": "pinhole",
            "width": self.width,
            "height": self.height,
            "intrinsics": {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy},
            "position_xyz": list(self.position),
            "rotation_world_to_camera": [list(row) for row in self.rotation],
            "yaw_deg": yaw,
            "pitch_deg": pitch,
            "roll_deg": 0.0,
        }


@dataclass(frozen=True)
class OrthoCamera:
    """Satellite camera: parallel rays; pixel centres are georeferenced on the plane z = `reference_z`.

    With an off-nadir view direction, ground at `reference_z` still lands on its map position
    (as in an orthorectified tile) while anything higher leans away from the satellite.
    """

    centre: tuple[float, float]
    extent: float
    width: int
    height: int
    reference_z: float = 0.0
    off_nadir_deg: float = 0.0
    azimuth_deg: float = 0.0  # direction the satellite looks towards, clockwise from north

    @property
    def gsd(self) -> float:
        return self.extent / self.width

    def direction(self) -> np.ndarray:
        tilt = math.radians(self.off_nadir_deg)
        az = math.radians(self.azimuth_deg)
        return np.array([math.sin(tilt) * math.sin(az), math.sin(tilt) * math.cos(az), -math.cos(tilt)])

    def rays(self, supersample: int = 1, start_height: float = 500.0) -> tuple[torch.Tensor, torch.Tensor]:
        s = supersample
        gsd = self.extent / self.width
        cols = (torch.arange(self.width * s, dtype=torch.float64) + 0.5) / s
        rows = (torch.arange(self.height * s, dtype=torch.float64) + 0.5) / s
        v, u = torch.meshgrid(rows, cols, indexing="ij")
        x = self.centre[0] + (u - self.width / 2.0) * gsd
        y = self.centre[1] - (v - self.height / 2.0) * gsd
        d = torch.tensor(self.direction(), dtype=torch.float64)
        ground = torch.stack([x, y, torch.full_like(x, self.reference_z)], dim=-1).reshape(-1, 3)
        back = start_height / float(-d[2])
        origins = ground - back * d
        return origins.float().contiguous(), d.float().expand_as(origins).contiguous()

    def metadata(self) -> dict[str, Any]:
        return {
            "model": "orthographic",
            "width": self.width,
            "height": self.height,
            "centre_xy": list(self.centre),
            "extent_m": self.extent,
            "gsd_m": self.gsd,
            "reference_z": self.reference_z,
            "off_nadir_deg": self.off_nadir_deg,
            "view_azimuth_deg": self.azimuth_deg,
            "north_up": True,
        }


@dataclass(frozen=True)
class PanoramaCamera:
    """Equirectangular street-level panorama: column -> azimuth, row -> elevation.

    North is at the centre column (azimuth grows clockwise to the right, as in CVUSA's
    north-aligned panoramas); the rows span +vfov/2 (top) to -vfov/2 (bottom).
    """

    position: tuple[float, float, float]
    width: int
    height: int
    vfov_deg: float

    def rays(self, supersample: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        s = supersample
        cols = (torch.arange(self.width * s, dtype=torch.float64) + 0.5) / (self.width * s)
        rows = (torch.arange(self.height * s, dtype=torch.float64) + 0.5) / (self.height * s)
        azimuth = (cols - 0.5) * 2 * math.pi
        elevation = (0.5 - rows) * math.radians(self.vfov_deg)
        el, az = torch.meshgrid(elevation, azimuth, indexing="ij")
        d = torch.stack([torch.cos(el) * torch.sin(az), torch.cos(el) * torch.cos(az), torch.sin(el)], dim=-1)
        d = d.reshape(-1, 3)
        origins = torch.tensor(self.position, dtype=torch.float64).expand_as(d)
        return origins.float().contiguous(), d.float().contiguous()

    def pixel_angle(self) -> float:
        return 2 * math.pi / self.width

    def metadata(self) -> dict[str, Any]:
        return {
            "model": "equirectangular",
            "width": self.width,
            "height": self.height,
            "position_xyz": list(self.position),
            "vfov_deg": self.vfov_deg,
            "centre_column_azimuth_deg": 0.0,
        }
