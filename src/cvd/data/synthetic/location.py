"""One location of a dataset: which images it gets, and rendering them all from one scene.

Per location we rasterise two nested windows of the world (a detailed near window that
holds the satellite tile, a coarse far field for what oblique views see near the horizon),
shade each window once per capture (satellite pass, drone flight, street visit), then cast
every view. The random streams are keyed by the location's global index, so a location's
images do not depend on which other locations are generated or in what order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cvd.data.synthetic.cameras import OrthoCamera, PanoramaCamera, PinholeCamera
from cvd.data.synthetic.lighting import drone_capture, satellite_capture
from cvd.data.synthetic.noise import object_rng
from cvd.data.synthetic.options import SynthOptions
from cvd.data.synthetic.raster import Material, Raster
from cvd.data.synthetic.render import Scene, render, render_views
from cvd.data.synthetic.world import World

FAR_CELL = 2.0
"""Cell size (m) of the far field: beyond the near window a drone pixel covers metres anyway."""
NEAR_MARGIN = 60.0
"""Near window = satellite tile + this margin (m): room for shadows cast into the tile and for
the part of a drone view where details are resolved."""
STREET_REACH = 220.0
SHADOW_MARGIN = 40.0
"""Metres around a satellite tile shaded with it: buildings that far out still cast shadows in."""

_STREAM_SATELLITE, _STREAM_DRONE, _STREAM_STREET, _STREAM_SHOTS, _STREAM_NOISE = 300, 301, 302, 303, 304


@dataclass(frozen=True)
class DroneShot:
    """One drone image: the camera orbits the location at `altitude`, looking towards `azimuth_deg`."""

    index: int
    altitude: float
    azimuth_deg: float  # heading of the camera's optical axis, clockwise from north
    pitch_deg: float  # depression of the optical axis below the horizon
    aim: tuple[float, float]  # aim point offset from the location centre, metres (east, north)


@dataclass(frozen=True)
class LocationSpec:
    """What to render for one location; `index` seeds its random streams."""

    index: int
    name: str
    x: float
    y: float
    role: str
    drone: tuple[DroneShot, ...] = ()
    panorama: bool = False
    street_views: int = 0
    satellite_on_street: bool = False


@dataclass
class RenderedLocation:
    spec: LocationSpec
    images: dict[str, np.ndarray] = field(default_factory=dict)
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def plan_drone_shots(
    rng: np.random.Generator, views: int, altitudes: tuple[float, ...], options: SynthOptions
) -> tuple[DroneShot, ...]:
    """`views` shots spread around the orbit, altitudes stepping down like University-1652's spiral."""
    shots = []
    start = rng.uniform(0, 360)
    ordered = sorted(altitudes, reverse=True)
    for n in range(views):
        altitude = (
            ordered[(n * len(ordered)) // views] if views >= len(ordered) else ordered[n % len(ordered)]
        )
        shots.append(_orbit_shot(rng, n, views, float(altitude), start, options))
    return tuple(shots)


def _orbit_shot(
    rng: np.random.Generator, n: int, views: int, altitude: float, start: float, options: SynthOptions
) -> DroneShot:
    """The n-th of `views` shots evenly around the orbit from `start` degrees, each jittered by up
    to 12 degrees, with its own pitch and aim point."""
    azimuth = (start + 360.0 * n / views + rng.uniform(-12, 12)) % 360.0
    pitch = rng.uniform(*options.drone_pitch_deg)
    aim = tuple(float(v) for v in rng.uniform(-options.aim_jitter, options.aim_jitter, size=2))
    return DroneShot(n, altitude, float(azimuth), float(pitch), aim)  # type: ignore[arg-type]


def plan_altitude_shots(
    rng: np.random.Generator, per_altitude: int, altitudes: tuple[float, ...], options: SynthOptions
) -> tuple[DroneShot, ...]:
    """SUES-200 style: `per_altitude` shots at each altitude, each altitude's own full orbit."""
    shots = []
    for altitude in altitudes:
        start = rng.uniform(0, 360)
        for n in range(per_altitude):
            shots.append(_orbit_shot(rng, n, per_altitude, float(altitude), start, options))
    return tuple(shots)


def drone_camera(
    shot: DroneShot, centre: tuple[float, float], ground: float, size: int, vfov: float
) -> PinholeCamera:
    """Camera on the orbit: `altitude` above the target's ground, looking down at `pitch` at the aim point."""
    target = np.array([centre[0] + shot.aim[0], centre[1] + shot.aim[1], ground])
    distance = shot.altitude / math.tan(math.radians(shot.pitch_deg))
    heading = math.radians(shot.azimuth_deg)
    position = target + np.array(
        [-distance * math.sin(heading), -distance * math.cos(heading), shot.altitude]
    )
    return PinholeCamera.looking_at(position, target, size, size, vfov)


def panorama_size(size: int) -> tuple[int, int]:
    """(height, width) of a street panorama for satellite tiles of `size` px: CVUSA's 224:1232 aspect."""
    width = 2 * size
    return max(8, round(width * 224 / 1232)), width


class LocationRenderer:
    """Renders locations of one world at one image size."""

    def __init__(self, world: World, size: int, options: SynthOptions) -> None:
        self.world = world
        self.size = size
        self.options = options
        self.seed = world.seed

    def _street_point(self, raster: Raster, x: float, y: float) -> tuple[float, float, float]:
        """Nearest road cell to (x, y), where a street-view car could stand."""
        xs, ys = raster.cell_centres()
        distance = (xs - x) ** 2 + (ys - y) ** 2
        road = raster.material == Material.ROAD
        allowed = road & (distance < self.options.street_search_radius**2)
        if not allowed.any():
            allowed = ~np.isin(raster.material, [Material.ROOF, Material.TREE, Material.BOX, Material.WATER])
        j, i = np.unravel_index(np.argmin(np.where(allowed, distance, np.inf)), distance.shape)
        return float(xs[0, i]), float(ys[j, 0]), float(raster.height[j, i])

    def _reach(self, spec: LocationSpec, centre: tuple[float, float], ground: float) -> float:
        """How far from the centre any view of this location can see (bounded by max_view_distance)."""
        reach = 0.0
        for shot in spec.drone:
            cam = drone_camera(shot, centre, ground, 2, self.options.drone_vfov_deg)
            origins, directions = cam.rays()
            corners = directions[[0, 1, 2, 3]]
            drop = (corners[:, 2]).clamp(max=-1e-3)
            t = (ground - 10.0 - origins[0, 2]) / drop
            points = origins[0, :2] + t[:, None] * corners[:, :2]
            far = float(torch.max(torch.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1])))
            reach = max(reach, far)
        if spec.panorama or spec.street_views:
            reach = max(reach, STREET_REACH + self.options.street_search_radius)
        return min(reach, self.options.max_view_distance)

    def render(self, spec: LocationSpec, only: set[str] | None = None) -> RenderedLocation:
        """All images of one location (or the kinds in `only`: satellite, drone, panorama, street)."""
        opts = self.options
        out = RenderedLocation(spec)
        x, y = spec.x, spec.y
        half = opts.satellite_extent / 2 + NEAR_MARGIN
        near = self.world.window(x - half, y - half, x + half, y + half)
        street = None
        if spec.panorama or spec.street_views or spec.satellite_on_street:
            street = self._street_point(near, x, y)
        centre = (street[0], street[1]) if (spec.satellite_on_street and street) else (x, y)
        if centre != (x, y):
            near = self.world.window(centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
        ground = self.world.ground_height(centre[0], centre[1])
        near_scene = Scene(near)
        out.info.update(centre_xy=list(centre), ground_z=ground)
        want = only or {"satellite", "drone", "panorama", "street"}

        if "satellite" in want:
            rng = object_rng(self.seed, _STREAM_SATELLITE, spec.index)
            capture = satellite_capture(rng, opts.satellite_veil, opts.season_shift, opts.colour_jitter)
            camera = OrthoCamera(
                centre=centre,
                extent=opts.satellite_extent,
                width=self.size,
                height=self.size,
                reference_z=ground,
                off_nadir_deg=float(rng.uniform(*opts.satellite_off_nadir_deg)),
                azimuth_deg=float(rng.uniform(0, 360)),
            )
            crop = near_scene.crop(centre, opts.satellite_extent / 2 + SHADOW_MARGIN)
            layers = [(crop, crop.shade(capture))]
            noise = object_rng(self.seed, _STREAM_NOISE, spec.index, 0)
            out.images["satellite"] = render(camera, layers, noise, opts.sensor_noise)
            out.cameras["satellite"] = {**camera.metadata(), "capture": "satellite"}
            out.info["satellite_capture"] = capture.to_dict()

        need_far = (
            ("drone" in want and spec.drone)
            or ("panorama" in want and spec.panorama)
            or ("street" in want and spec.street_views)
        )
        if not need_far:
            return out
        reach = self._reach(spec, centre, ground) + 20.0
        far = self.world.window(
            centre[0] - reach, centre[1] - reach, centre[0] + reach, centre[1] + reach, FAR_CELL
        )
        far_scene = Scene(far)

        if "drone" in want and spec.drone:
            rng = object_rng(self.seed, _STREAM_DRONE, spec.index)
            capture = drone_capture(rng, opts.drone_haze, opts.season_shift, opts.colour_jitter)
            layers = [(near_scene, near_scene.shade(capture)), (far_scene, far_scene.shade(capture))]
            cameras, noises, jitters = [], [], []
            for n, shot in enumerate(spec.drone):
                cameras.append(drone_camera(shot, centre, ground, self.size, opts.drone_vfov_deg))
                noise = object_rng(self.seed, _STREAM_NOISE, spec.index, 1000 + n)
                jitters.append(
                    tuple(float(v) for v in 1.0 + opts.colour_jitter * noise.uniform(-0.03, 0.03, size=3))
                )
                noises.append(noise)
            images = render_views(cameras, layers, noises, opts.sensor_noise, exposure_jitters=jitters)  # type: ignore[arg-type]
            for n, (shot, camera, image) in enumerate(zip(spec.drone, cameras, images)):
                key = f"drone/{n}"
                out.images[key] = image
                out.cameras[key] = {
                    **camera.metadata(),
                    "capture": "drone",
                    "altitude_m": shot.altitude,
                    "orbit_azimuth_deg": shot.azimuth_deg,
                    "aim_offset_m": list(shot.aim),
                }
            out.info["drone_capture"] = capture.to_dict()

        if street is not None and (
            ("panorama" in want and spec.panorama) or ("street" in want and spec.street_views)
        ):
            rng = object_rng(self.seed, _STREAM_STREET, spec.index)
            capture = drone_capture(
                rng, (opts.drone_haze[0] * 2, opts.drone_haze[1] * 2), opts.season_shift, opts.colour_jitter
            )
            layers = [(near_scene, near_scene.shade(capture)), (far_scene, far_scene.shade(capture))]
            eye = (street[0], street[1], street[2] + opts.street_height)
            out.info["street_xyz"] = list(eye)
            if "panorama" in want and spec.panorama:
                h, w = panorama_size(self.size)
                camera = PanoramaCamera(eye, w, h, 360.0 * h / w)
                noise = object_rng(self.seed, _STREAM_NOISE, spec.index, 2000)
                out.images["panorama"] = render(
                    camera, layers, noise, opts.sensor_noise, t_max=STREET_REACH * 2
                )
                out.cameras["panorama"] = {**camera.metadata(), "capture": "street"}
            if "street" in want:
                for n in range(spec.street_views):
                    heading = math.atan2(x - eye[0], y - eye[1]) + math.radians(
                        25.0 * (n - (spec.street_views - 1) / 2)
                    )
                    target = np.array(
                        [eye[0] + 30 * math.sin(heading), eye[1] + 30 * math.cos(heading), eye[2] + 4.0]
                    )
                    camera = PinholeCamera.looking_at(np.array(eye), target, self.size, self.size, 60.0)
                    noise = object_rng(self.seed, _STREAM_NOISE, spec.index, 3000 + n)
                    out.images[f"street/{n}"] = render(
                        camera, layers, noise, opts.sensor_noise, t_max=STREET_REACH * 2
                    )
                    out.cameras[f"street/{n}"] = {**camera.metadata(), "capture": "street"}
            out.info["street_capture"] = capture.to_dict()
        return out
